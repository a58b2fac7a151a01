"""LR schedules trace what params ask for, and the range test picks a sensible LR."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from cifarlab.config import TrainConfig
from cifarlab.train.lr_finder import range_test
from cifarlab.train.optim import make_optimizer
from cifarlab.train.schedule import Schedule
from conftest import default_params_dict

# PyTorch's own SGD units, so that the LRs below are the ones the optimiser uses
TRAIN = {**default_params_dict()["train"], "batch_size": 32}
TRAIN["optimizer"] = {**TRAIN["optimizer"], "decoupled": False, "lr": 0.05, "norm_bias_lr_scale": 1.0}
STEPS = 10


def lr_trace(raw: dict, steps_per_epoch: int, max_lr: float | None = None,
             test_losses: list[float] | None = None) -> list[float]:
    """The LR used at every optimiser step of a run, without training."""
    cfg = TrainConfig.model_validate(raw)
    model = nn.Linear(1, 1)
    optimizer = make_optimizer(model, cfg.optimizer, cfg.batch_size)
    schedule = Schedule(optimizer, cfg.scheduler, cfg.epochs, steps_per_epoch, max_lr, cfg.optimizer.lr)
    trace = []
    for epoch in range(cfg.epochs):
        for _ in range(steps_per_epoch):
            trace.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            schedule.step_batch()
        schedule.step_epoch(test_losses[epoch] if test_losses else 0.0)
    return trace


def _cfg(name, epochs=24, **onecycle):
    cfg = copy.deepcopy(TRAIN)
    cfg["epochs"] = epochs
    cfg["scheduler"]["name"] = name
    cfg["scheduler"]["onecycle"].update(onecycle)
    return cfg


@pytest.mark.parametrize("anneal, last", [(False, 0.04), (True, 0.04 / 1e4)])
def test_onecycle_peaks_at_the_requested_epoch_and_ends_where_asked(anneal, last):
    cfg = _cfg("onecycle", peak_epoch=5, div_factor=10, anneal=anneal)
    trace = lr_trace(cfg, STEPS, max_lr=0.4)
    assert len(trace) == 24 * STEPS
    peak = int(np.argmax(trace))
    assert abs(peak - 5 * STEPS) <= 1  # the end of epoch 5
    assert trace[peak] == pytest.approx(0.4)
    assert trace[0] == pytest.approx(0.04)
    assert trace[-1] == pytest.approx(last, rel=0.15, abs=1e-3 * last)


def test_a_peak_beyond_the_run_moves_to_a_quarter_of_training():
    cfg = _cfg("onecycle", epochs=4, peak_epoch=5, div_factor=10)
    trace = lr_trace(cfg, STEPS, max_lr=0.4)
    assert abs(int(np.argmax(trace)) - STEPS) <= 1 and max(trace) == pytest.approx(0.4)


def test_plateau_cuts_the_lr_when_test_loss_stalls():
    cfg = _cfg("plateau", epochs=8)
    cfg["scheduler"]["plateau"].update(factor=0.1, patience=2)
    per_epoch = lr_trace(cfg, 1, test_losses=[1.0, 0.9, 0.9, 0.9, 0.9, 0.5, 0.5, 0.5])
    lr = cfg["optimizer"]["lr"]
    assert per_epoch[:5] == [lr] * 5
    assert per_epoch[5] == pytest.approx(lr * 0.1)


def test_step_and_cosine():
    cfg = _cfg("step", epochs=6)
    cfg["scheduler"]["step"].update(step_size=2, gamma=0.5)
    lr = cfg["optimizer"]["lr"]
    assert lr_trace(cfg, 1) == pytest.approx([lr, lr, lr / 2, lr / 2, lr / 4, lr / 4])
    cfg = _cfg("cosine", epochs=10)
    trace = lr_trace(cfg, 1)
    assert trace[0] == pytest.approx(lr) and trace[-1] < 0.05 * lr and trace == sorted(trace, reverse=True)


def test_cosine_floor_is_in_the_optimizer_units_and_every_group_decays_to_it():
    """Decoupled SGD (the units of every SGD recipe): PyTorch's LRs are far below optimizer.lr, so
    a floor passed to PyTorch as it is would lie above them and make the LR rise. min_lr = a tenth
    of optimizer.lr must end every group, the 64x norm biases too, at a tenth of its own LR."""
    raw = {**copy.deepcopy(default_params_dict()["train"]), "epochs": 8, "batch_size": 512}
    raw["optimizer"] = {**raw["optimizer"], "name": "sgd", "decoupled": True, "lr": 5.0, "norm_bias_lr_scale": 64}
    raw["scheduler"] = {**raw["scheduler"], "name": "cosine", "cosine": {"min_lr": 0.5}}
    cfg = TrainConfig.model_validate(raw)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    optimizer = make_optimizer(model, cfg.optimizer, cfg.batch_size)
    start = [group["lr"] for group in optimizer.param_groups]
    assert len(start) == 2 and start[0] < 0.5  # PyTorch's units: the rest's LR is below the floor as written
    schedule = Schedule(optimizer, cfg.scheduler, cfg.epochs, 1, lr=cfg.optimizer.lr)
    traces = [[lr] for lr in start]
    for _ in range(cfg.epochs):
        optimizer.step()
        schedule.step_epoch(0.0)
        for trace, group in zip(traces, optimizer.param_groups):
            trace.append(group["lr"])
    for trace, first in zip(traces, start):
        assert trace == sorted(trace, reverse=True)  # never rises
        assert trace[-1] == pytest.approx(first / 10)
        assert trace[cfg.epochs // 2] == pytest.approx(first * 0.55)  # halfway down the cosine


def test_range_test_picks_an_lr_inside_the_swept_range_and_restores_the_model():
    torch.manual_seed(0)
    inputs = torch.randn(512, 10)
    labels = (inputs[:, 0] + inputs[:, 1] > 0).long()
    loader = DataLoader(TensorDataset(inputs, labels), batch_size=32, shuffle=True)
    model = nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 2))
    before = copy.deepcopy(model.state_dict())
    optimizer = make_optimizer(model, TrainConfig.model_validate(TRAIN).optimizer, 32)
    sweep = range_test(model, optimizer, loader, torch.device("cpu"), 1e-5, 10.0, 100)
    assert 1e-5 <= sweep.suggested_lr <= 10.0
    assert 1e-3 <= sweep.suggested_lr <= 3.0  # where SGD learns this toy problem, not where it stalls or diverges
    assert min(sweep.losses) < sweep.losses[0]
    assert all(torch.equal(before[k], model.state_dict()[k]) for k in before)
