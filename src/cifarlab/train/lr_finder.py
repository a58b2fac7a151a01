"""Leslie Smith's LR range test: raise the LR exponentially batch by batch, watch the loss, and
pick the LR where it falls fastest. The model and optimiser are restored afterwards."""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from cifarlab.feed.batches import Batches
from cifarlab.feed.device import autocast, to_device

if TYPE_CHECKING:
    from cifarlab.config import LRFinderConfig, SchedulerConfig


@dataclass
class RangeTest:
    lrs: list[float]
    losses: list[float]  # exponentially smoothed
    suggested_lr: float


def _endless(batches: Batches):
    while True:
        yield from batches


def suggest_lr(lrs: list[float], losses: list[float]) -> float:
    """The LR of steepest descent of the smoothed loss against log(LR), before the loss minimum."""
    lowest = int(np.argmin(losses))
    if lowest < 2:
        return lrs[lowest]
    slopes = np.gradient(np.asarray(losses[: lowest + 1]), np.log(lrs[: lowest + 1]))
    return float(lrs[int(np.argmin(slopes))])


def range_test(model: nn.Module, optimizer: torch.optim.Optimizer, batches: Batches,
               device: torch.device, start_lr: float, end_lr: float, num_iter: int,
               smoothing: float = 0.05, diverge: float = 4.0, precision: str = "fp32") -> RangeTest:
    """Sweep from start_lr to end_lr over num_iter batches (stops early when the loss exceeds
    `diverge` times its best); the model's and optimiser's states are put back afterwards."""
    saved_model = copy.deepcopy(model.state_dict())
    saved_optimizer = copy.deepcopy(optimizer.state_dict())
    factor = (end_lr / start_lr) ** (1 / max(num_iter - 1, 1))
    lrs, losses, smoothed, best = [], [], 0.0, math.inf
    model.train()
    stream = _endless(batches)
    with tqdm(range(num_iter), desc="LR range test", unit="batch", leave=False, disable=None) as steps:
        for step in steps:
            lr = start_lr * factor ** step
            for group in optimizer.param_groups:
                group["lr"] = lr * group["lr_scale"]
            images, labels = next(stream)
            optimizer.zero_grad(set_to_none=True)
            with autocast(device, precision):
                loss = F.cross_entropy(model(to_device(images, device)), labels.to(device))
            loss.backward()
            optimizer.step()
            value = loss.item()
            smoothed = value if step == 0 else smoothing * value + (1 - smoothing) * smoothed
            if not math.isfinite(smoothed):
                break
            lrs.append(lr)
            losses.append(smoothed)
            best = min(best, smoothed)
            if smoothed > diverge * best:
                break
    model.load_state_dict(saved_model)
    optimizer.load_state_dict(saved_optimizer)
    return RangeTest(lrs, losses, suggest_lr(lrs, losses))


def choose_max_lr(scheduler: SchedulerConfig, finder: LRFinderConfig, model: nn.Module,
                  optimizer: torch.optim.Optimizer, batches: Batches, device: torch.device,
                  precision: str = "fp32") -> tuple[float | None, RangeTest | None]:
    """OneCycle's peak LR: as configured, or from a range test when 'auto'."""
    if scheduler.name != "onecycle":
        return None, None
    if scheduler.onecycle.max_lr != "auto":
        return float(scheduler.onecycle.max_lr), None
    sweep = range_test(model, optimizer, batches, device, finder.start_lr, finder.end_lr, finder.num_iter,
                       precision=precision)
    print(f"LR range test over {len(sweep.lrs)} batches picked max_lr {sweep.suggested_lr:.4g}", flush=True)
    return sweep.suggested_lr, sweep
