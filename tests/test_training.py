"""Training: steps lower the loss, the same seed gives the same run, an interrupted run resumes
to the same result, and a diverging loss stops at once."""
from __future__ import annotations

import copy
from dataclasses import asdict

import pytest
import torch
import torch.nn.functional as F
import yaml

from cifarlab.augment import eval_transform, train_transform
from cifarlab.dataset import make_loader
from cifarlab.models import build_model
from cifarlab.optim import make_optimizer
from cifarlab.training import NonFiniteLoss, fit, load_resume_state
from conftest import ROOT, make_arrays

PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())
MEAN, STD = [0.5] * 3, [0.25] * 3


def _cfg(**changes):
    cfg = copy.deepcopy(PARAMS["train"])
    cfg.update(epochs=2, batch_size=8, seed=3)
    cfg["scheduler"]["onecycle"].update(max_lr=0.05, peak_epoch=1)
    cfg.update(changes)
    return cfg


def test_one_training_step_lowers_the_loss():
    torch.manual_seed(0)
    model = build_model("tiny", 3)
    images, labels = torch.randn(16, 3, 32, 32), torch.randint(0, 3, (16,))
    optimizer = make_optimizer(model, _cfg())
    before = F.cross_entropy(model(images), labels)
    before.backward()
    optimizer.step()
    assert F.cross_entropy(model(images), labels).item() < before.item()


def _setup(cfg):
    torch.manual_seed(cfg["seed"])
    arrays = make_arrays(per_class_train=8, per_class_test=2)
    augment = train_transform(PARAMS["augment"], MEAN, STD, 32, seed=cfg["seed"])
    train = make_loader(*arrays["train"], augment, cfg["batch_size"], shuffle=True, seed=cfg["seed"])
    test = make_loader(*arrays["test"], eval_transform(MEAN, STD), 8)
    model = build_model("tiny", 3)
    return model, make_optimizer(model, cfg), train, test


def _run(cfg, on_epoch_end=lambda result, progress: None, **kwargs):
    model, optimizer, train, test = _setup(cfg)
    max_lr = cfg["scheduler"]["onecycle"]["max_lr"]
    progress = fit(model, optimizer, train, test, cfg, torch.device("cpu"), on_epoch_end, max_lr, **kwargs)
    return [asdict(r) for r in progress.history], model.state_dict()


def test_same_seed_gives_the_same_history():
    first, weights = _run(_cfg())
    assert len(first) == 2 and {"epoch", "train_loss", "test_acc", "lr"} <= set(first[0])
    again, weights_again = _run(_cfg())
    assert first == again
    assert all(torch.equal(weights[k], weights_again[k]) for k in weights)


class _Cut(Exception):
    pass


def test_resume_after_an_interruption_equals_an_uninterrupted_run(tmp_path):
    cfg = _cfg(epochs=3)
    whole, whole_weights = _run(cfg)

    state = tmp_path / "state.pt"

    def cut_after_first(result, _progress):
        if result.epoch == 1:
            raise _Cut
    with pytest.raises(_Cut):
        _run(cfg, cut_after_first, state_path=state, fingerprint="run")
    assert load_resume_state(state, "other run") is None
    resumed_state = load_resume_state(state, "run")
    assert resumed_state["epoch"] == 1

    resumed, resumed_weights = _run(cfg, state_path=state, fingerprint="run", resume=resumed_state)
    assert resumed == whole
    assert all(torch.equal(whole_weights[k], resumed_weights[k]) for k in whole_weights)


def test_nan_loss_stops_at_once_with_a_hint_and_keeps_the_best_so_far():
    cfg = _cfg(epochs=3)
    cfg["scheduler"]["onecycle"].update(max_lr=1e6)
    with pytest.raises(NonFiniteLoss, match=r"epoch \d+ by batch \d+.*learning rate is probably too high") as err:
        _run(cfg)
    assert len(err.value.progress.history) < 3
