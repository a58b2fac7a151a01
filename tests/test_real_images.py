"""A short real run: s9net on a few thousand CIFAR-10 JPEGs learns well above chance on CPU."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import yaml

from cifarlab.augment import eval_transform, train_transform
from cifarlab.data.sources import prepare
from cifarlab.dataset import make_loader
from cifarlab.models import build_model
from cifarlab.optim import make_optimizer
from cifarlab.stats import channel_stats
from cifarlab.training import fit
from conftest import ROOT, SHARED_JPEG

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not SHARED_JPEG.is_file(), reason="../shared/data/cifar10-jpeg.tar.gz not present")]


def test_s9net_two_epochs_on_real_images_beats_chance_by_far(tmp_path):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    data = prepare(str(SHARED_JPEG), 32, {"train": 5000, "test": 1000}, 0, tmp_path)
    assert data.num_classes == 10 and np.bincount(data.y_test).tolist() == [100] * 10
    mean, std = channel_stats(data.x_train)
    cfg = copy.deepcopy(params["train"])
    cfg.update(epochs=2, batch_size=32, seed=0)
    cfg["optimizer"].update(name="adamw", weight_decay=1e-4)
    cfg["scheduler"]["onecycle"].update(max_lr=3e-3, peak_epoch=0.5)
    for heavy in ("crop", "cutout"):  # regularisers that only pay off over many epochs
        params["augment"][heavy]["p"] = 0.0
    torch.manual_seed(0)
    augment = train_transform(params["augment"], mean, std, 32, seed=0)
    train = make_loader(data.x_train, data.y_train, augment, 32, shuffle=True, seed=0)
    test = make_loader(data.x_test, data.y_test, eval_transform(mean, std), 500)
    model = build_model("s9net", 10)
    progress = fit(model, make_optimizer(model, cfg), train, test, cfg, torch.device("cpu"),
                   lambda *_: None, max_lr=3e-3)
    accuracies = [row.test_acc for row in progress.history]
    # chance is 10%; this run reaches about 47% (2026-11, CPU); 35% leaves room for library drift
    assert accuracies[-1] > 35.0, accuracies
