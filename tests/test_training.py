"""Training steps lower the loss; the same seed gives the same run."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from cifarlab.augment import eval_transform
from cifarlab.dataset import make_loader
from cifarlab.models import build_model
from cifarlab.training import fit, make_optimizer
from conftest import make_arrays

CFG = {"epochs": 2, "batch_size": 8,
       "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4},
       "scheduler": {"name": "onecycle", "max_lr": 0.05, "pct_start": 0.25}}


def test_one_training_step_lowers_the_loss():
    torch.manual_seed(0)
    model = build_model("tiny", 3)
    images, labels = torch.randn(16, 3, 32, 32), torch.randint(0, 3, (16,))
    optimizer = make_optimizer(model, CFG)
    before = F.cross_entropy(model(images), labels)
    before.backward()
    optimizer.step()
    after = F.cross_entropy(model(images), labels)
    assert after.item() < before.item()


def _run(seed: int):
    torch.manual_seed(seed)
    arrays = make_arrays(per_class_train=8, per_class_test=2)
    transform = eval_transform([0.5] * 3, [0.25] * 3)
    train = make_loader(*arrays["train"], transform, 8, shuffle=True, seed=seed)
    test = make_loader(*arrays["test"], transform, 8)
    model = build_model("tiny", 3)
    return [r.as_row() for r in fit(model, train, test, CFG, torch.device("cpu"), lambda r: None)]


def test_same_seed_gives_the_same_history():
    first = _run(7)
    assert len(first) == 2 and {"epoch", "train_loss", "test_acc", "lr"} <= set(first[0])
    assert first == _run(7)
