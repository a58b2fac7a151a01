"""Optimisers and LR schedules from params.yaml's train.optimizer / train.scheduler."""
from __future__ import annotations

import torch
from torch import nn

ANNIHILATION = 1e4  # OneCycle with anneal: the last LR is the starting LR / 1e4


def make_optimizer(model: nn.Module, cfg: dict) -> torch.optim.Optimizer:
    opt = cfg["optimizer"]
    if opt["name"] == "sgd":
        return torch.optim.SGD(model.parameters(), lr=opt["lr"], momentum=opt["momentum"],
                               nesterov=opt["nesterov"], weight_decay=opt["weight_decay"])
    optimizer = torch.optim.AdamW if opt["name"] == "adamw" else torch.optim.Adam
    return optimizer(model.parameters(), lr=opt["lr"], weight_decay=opt["weight_decay"])


class OneCycle:
    """Piecewise-linear one-cycle factor of max_lr: start -> 1 at step `peak` -> end at step
    `total` (the DAWNBench ResNet9 shape). Defined for any number of steps."""

    def __init__(self, total: int, peak: int, start: float, end: float) -> None:
        self.total, self.peak, self.start, self.end = total, peak, start, end

    def __call__(self, step: int) -> float:
        if step <= self.peak:
            return self.start + (1 - self.start) * step / max(self.peak, 1)
        return 1 + (self.end - 1) * min(step - self.peak, self.total - self.peak) / max(self.total - self.peak, 1)


class Schedule:
    """One object for every scheduler kind: step_batch() after each optimiser step, step_epoch()
    after each epoch's test score. OneCycle moves per batch, the others per epoch."""

    def __init__(self, optimizer: torch.optim.Optimizer, cfg: dict, steps_per_epoch: int,
                 max_lr: float | None = None) -> None:
        sched, epochs = cfg["scheduler"], cfg["epochs"]
        self.name = sched["name"]
        lr_sched = torch.optim.lr_scheduler
        if self.name == "onecycle":
            one = sched["onecycle"]
            for group in optimizer.param_groups:
                group["lr"] = max_lr
            cycle = OneCycle(total=epochs * steps_per_epoch - 1, peak=round(one["peak_epoch"] * steps_per_epoch),
                             start=1 / one["div_factor"],
                             end=1 / one["div_factor"] / (ANNIHILATION if one["anneal"] else 1.0))
            self.scheduler = lr_sched.LambdaLR(optimizer, cycle)
        elif self.name == "plateau":
            self.scheduler = lr_sched.ReduceLROnPlateau(
                optimizer, mode="min", factor=sched["plateau"]["factor"], patience=sched["plateau"]["patience"])
        elif self.name == "step":
            self.scheduler = lr_sched.StepLR(optimizer, step_size=sched["step"]["step_size"],
                                             gamma=sched["step"]["gamma"])
        elif self.name == "cosine":
            self.scheduler = lr_sched.CosineAnnealingLR(optimizer, T_max=epochs, eta_min=sched["cosine"]["min_lr"])
        else:
            self.scheduler = None

    def step_batch(self) -> None:
        if self.name == "onecycle":
            self.scheduler.step()

    def step_epoch(self, test_loss: float) -> None:
        if self.name == "plateau":
            self.scheduler.step(test_loss)
        elif self.name in ("step", "cosine"):
            self.scheduler.step()

    def state_dict(self) -> dict:
        return self.scheduler.state_dict() if self.scheduler is not None else {}

    def load_state_dict(self, state: dict) -> None:
        if self.scheduler is not None:
            self.scheduler.load_state_dict(state)

