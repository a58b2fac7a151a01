"""LR schedules from train.scheduler, behind one interface: step_batch() after each optimiser
step, step_epoch() after each epoch's validation score. OneCycle and linear move per batch, the
others per epoch."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from cifarlab.config import SchedulerConfig

ANNIHILATION = 1e4  # OneCycle with anneal: the last LR is the starting LR / 1e4


def onecycle_peak(peak_epoch: float, epochs: int) -> float:
    """The epoch where OneCycle peaks: as configured, or a quarter of training when the configured
    peak is not before the end (so `-S train.epochs=2` alone makes a valid short run)."""
    return peak_epoch if peak_epoch < epochs else epochs / 4


class OneCycle:
    """Piecewise-linear one-cycle factor of max_lr: start -> 1 at step `peak` -> end at step
    `total` (the DAWNBench ResNet9 shape). Defined for any number of steps."""

    def __init__(self, total: int, peak: int, start: float, end: float) -> None:
        self.total, self.peak, self.start, self.end = total, peak, start, end

    def __call__(self, step: int) -> float:
        if step <= self.peak:
            return self.start + (1 - self.start) * step / max(self.peak, 1)
        return 1 + (self.end - 1) * min(step - self.peak, self.total - self.peak) / max(self.total - self.peak, 1)


def cosine_factor(epoch: int, epochs: int, floor: float) -> float:
    """Cosine decay from 1 at epoch 0 to `floor` at epoch `epochs` (Loshchilov & Hutter, SGDR, 2017)."""
    return floor + (1 - floor) * (1 + math.cos(math.pi * min(epoch, epochs) / epochs)) / 2


class Schedule:
    def __init__(self, optimizer: torch.optim.Optimizer, cfg: SchedulerConfig, epochs: int, steps_per_epoch: int,
                 max_lr: float | None = None, lr: float | None = None) -> None:
        """`lr` is train.optimizer.lr, in the units cosine.min_lr is given in (those of train.optimizer):
        cosine needs it to turn its floor into a fraction of each group's own LR."""
        self.name = cfg.name
        lr_sched = torch.optim.lr_scheduler
        if self.name == "onecycle":
            one = cfg.onecycle
            for group in optimizer.param_groups:
                group["lr"] = max_lr * group["lr_scale"]
            peak = onecycle_peak(one.peak_epoch, epochs)
            cycle = OneCycle(total=epochs * steps_per_epoch - 1, peak=round(peak * steps_per_epoch),
                             start=1 / one.div_factor,
                             end=1 / one.div_factor / (ANNIHILATION if one.anneal else 1.0))
            self.scheduler = lr_sched.LambdaLR(optimizer, cycle)
        elif self.name == "linear":  # airbench's schedule: step s of n uses the factor at s, reaching `end` at n
            line = cfg.linear
            total = epochs * steps_per_epoch
            self.scheduler = lr_sched.LambdaLR(optimizer, OneCycle(total=total, peak=int(line.warmup * total),
                                                                   start=line.start, end=line.end))
        elif self.name == "plateau":
            self.scheduler = lr_sched.ReduceLROnPlateau(optimizer, mode="min", factor=cfg.plateau.factor,
                                                        patience=cfg.plateau.patience)
        elif self.name == "step":
            self.scheduler = lr_sched.StepLR(optimizer, step_size=cfg.step.step_size, gamma=cfg.step.gamma)
        elif self.name == "cosine":  # a factor of each group's own LR, so every group keeps its ratio to the rest
            if lr is None:
                raise ValueError("a cosine schedule needs train.optimizer.lr (Schedule's lr)")
            floor = cfg.cosine.min_lr / lr
            self.scheduler = lr_sched.LambdaLR(optimizer, lambda epoch: cosine_factor(epoch, epochs, floor))
        else:
            self.scheduler = None

    def step_batch(self) -> None:
        if self.name in ("onecycle", "linear"):
            self.scheduler.step()

    def step_epoch(self, monitored_loss: float) -> None:
        if self.name == "plateau":
            self.scheduler.step(monitored_loss)
        elif self.name in ("step", "cosine"):
            self.scheduler.step()

    def state_dict(self) -> dict:
        return self.scheduler.state_dict() if self.scheduler is not None else {}

    def load_state_dict(self, state: dict) -> None:
        if self.scheduler is not None:
            self.scheduler.load_state_dict(state)
