"""The training loop: epochs of optimiser steps, each followed by a score on the validation
split, which alone decides (the plateau schedule and, with checkpoint best_val, which weights
are kept); the test split is scored only for display. A NaN/inf loss stops the loop at once and
is returned as the run's failure with everything achieved so far.

Under data-parallel training every process runs this loop on its part of each batch; losses and
counts are summed over processes, rank 0 alone scores validation and test and shares the scores,
so every process takes the same decisions."""
from __future__ import annotations

import contextlib
import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from cifarlab.core.errors import LR_TOO_HIGH
from cifarlab.feed.batches import Batches
from cifarlab.feed.device import autocast, to_device
from cifarlab.feed.inference import score
from cifarlab.train.clock import RunClock, duration
from cifarlab.train.distributed import SINGLE, DataParallel, Group, total
from cifarlab.train.schedule import Schedule

NO_SCORE = (math.nan, math.nan)


@dataclass
class EpochResult:
    epoch: int
    train_loss: float
    train_acc: float
    val_loss: float  # NaN without a validation split
    val_acc: float
    test_loss: float  # display only: the assignments' "train vs test" curves; never used for a decision
    test_acc: float
    lr: float


@dataclass
class Progress:
    """What a run has achieved so far; saved with the resume state."""
    history: list[EpochResult] = field(default_factory=list)
    kept_epoch: int = 0  # the epoch whose weights the checkpoint holds
    kept_weights: dict | None = None
    best_val_acc: float = -1.0
    best_val_epoch: int = 0
    step_lrs: list[float] = field(default_factory=list)  # the LR of every optimiser step so far
    train_seconds: float = 0.0  # inside the training steps' epochs, not scoring, plotting or saving
    epoch_seconds: float = 0.0  # whole epochs: training steps plus scoring
    failure: str | None = None  # why training stopped early, if it did
    estimated_seconds: float | None = None  # the whole training's expected time, from its first steps here

    def record(self, result: EpochResult, model: nn.Module, checkpoint: str) -> None:
        """Add an epoch; keep its weights if it is the last (checkpoint 'last') or the best on
        validation so far (checkpoint 'best_val')."""
        self.history.append(result)
        improved = result.val_acc > self.best_val_acc  # False for NaN: no validation split
        if improved:
            self.best_val_acc, self.best_val_epoch = result.val_acc, result.epoch
        if checkpoint == "last" or improved:
            self.kept_epoch = result.epoch
            self.kept_weights = copy.deepcopy({k: v.cpu() for k, v in model.state_dict().items()})


class NonFiniteLoss(Exception):
    """The loss became NaN or infinite, or exploded: training cannot continue."""


# A step's mean cross-entropy above this many times a uniform guess's, ln(classes): the test suite's
# short runs overshot in their first steps to 410x (a loss of 450 on 3 classes) and recovered; the
# run reported diverging without overflowing reached a loss of 7.6e9.
DIVERGED = 1000


def _check_finite(loss_sum: float, step_loss: float, classes: int, epoch: int, step: int) -> None:
    if not math.isfinite(loss_sum):
        raise NonFiniteLoss(f"loss became NaN/inf in epoch {epoch} by batch {step}; {LR_TOO_HIGH}")
    bound = DIVERGED * math.log(max(classes, 2))
    if step_loss > bound:
        raise NonFiniteLoss(f"training diverged: the loss reached {step_loss:.3g} in epoch {epoch}, batch {step}, "
                            f"over {bound:.1f} ({DIVERGED}x a uniform guess's ln({classes})); {LR_TOO_HIGH}")


def scaled(images: torch.Tensor, size: int) -> torch.Tensor:
    """Images scaled to size x size, antialiased (a shrunk image without aliasing is a blurred one,
    as a smaller photo would be), in the layout they came in."""
    layout = torch.channels_last if images.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format
    out = F.interpolate(images, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return out.contiguous(memory_format=layout)


def _local_only(model: nn.Module, accumulate: bool):
    """DDP's no_sync while a step's gradients still accumulate; nothing for a plain model."""
    if accumulate and isinstance(model, nn.parallel.DistributedDataParallel):
        return model.no_sync()
    return contextlib.nullcontext()


def _forward_backward(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, scaler: torch.amp.GradScaler,
                      device: torch.device, precision: str, label_smoothing: float, micro_batch: int
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch's logits and mean loss, its gradients accumulated in chunks of micro_batch images
    (0: all at once), each chunk's loss weighted by its share of the batch, so the gradient is the
    whole batch's. Smaller chunks keep a CPU's activations in cache; BatchNorm then normalises
    each chunk by its own statistics."""
    chunks = list(zip(images.split(micro_batch or len(images)), labels.split(micro_batch or len(labels))))
    all_logits, loss_sum = [], 0.0
    for index, (chunk, chunk_labels) in enumerate(chunks, start=1):
        # under DDP, gradients are averaged over processes once, after the last chunk: not per chunk
        with _local_only(model, index < len(chunks)):
            with autocast(device, precision):
                logits = model(chunk)
                share = len(chunk) / len(images)
                loss = F.cross_entropy(logits, chunk_labels, label_smoothing=label_smoothing) * share
            scaler.scale(loss).backward()
        all_logits.append(logits.detach())
        loss_sum = loss_sum + loss.detach()
    return torch.cat(all_logits), loss_sum


def train_epoch(model: nn.Module, batches: Batches, optimizer: torch.optim.Optimizer, schedule: Schedule,
                scaler: torch.amp.GradScaler, device: torch.device, epoch: int, clock: RunClock | None = None,
                label_smoothing: float = 0.0, precision: str = "fp32", group: Group = SINGLE,
                step_lrs: list[float] | None = None, after_step: Callable[[], None] | None = None,
                micro_batch: int = 0, size: int | None = None, guard: bool = True) -> tuple[float, float]:
    """One pass over `batches`; returns mean loss and accuracy (%) over all processes and appends
    each step's LR to `step_lrs`. `after_step` runs after each optimiser step (the lookahead).
    With `size`, each augmented batch is scaled down to size x size pixels first (train.low_res).
    Each step moves the run's `clock` (its bar shows on rank 0; none: nothing shown). `guard`: stop
    on a NaN or exploding loss (off for the tools that time a step: a fixed LR on random labels)."""
    clock = clock or RunClock(1, len(batches), show=False)
    clock.start_epoch(epoch)
    model.train()
    sums = torch.zeros(2, dtype=torch.float64, device=device)  # loss x images, correct
    seen = 0

    def totals() -> tuple[float, float, float]:
        return tuple(total(group, torch.cat([sums, sums.new_tensor([seen])])).tolist())

    for step, (images, labels) in enumerate(batches, start=1):
        images, labels = to_device(images, device), labels.to(device, non_blocking=True)
        if size is not None:
            images = scaled(images, size)
        optimizer.zero_grad(set_to_none=True)
        if step_lrs is not None:
            step_lrs.append(optimizer.param_groups[0]["lr"])
        logits, loss = _forward_backward(model, images, labels, scaler, device, precision, label_smoothing,
                                         micro_batch)
        scaler.step(optimizer)
        scaler.update()
        schedule.step_batch()
        if after_step is not None:
            after_step()
        sums += torch.stack([loss.detach().double() * len(labels), (logits.argmax(1) == labels).sum().double()])
        seen += len(labels)
        shown = {}
        if step % 20 == 0 or step == len(batches) or device.type == "cpu":  # a host sync: not every step on GPUs
            loss_sum, correct, count = totals()
            if guard:
                _check_finite(loss_sum, float(loss), logits.shape[1], epoch, step)
            shown = {"loss": f"{loss_sum / count:.4f}", "acc": f"{100 * correct / count:.2f}%"}
        clock.step_done(**shown)
    loss_sum, correct, count = totals()
    return loss_sum / count, 100.0 * correct / count


def fit(model: nn.Module, optimizer: torch.optim.Optimizer, schedule: Schedule, scaler: torch.amp.GradScaler,
        train: Batches, val: Batches | None, test: Batches | None, epochs: int, device: torch.device,
        progress: Progress, on_epoch_end: Callable[[Progress], None], checkpoint: str = "last",
        label_smoothing: float = 0.0, precision: str = "fp32", group: Group = SINGLE,
        trainer: DataParallel | None = None, after_step: Callable[[], None] | None = None,
        micro_batch: int = 0, low_res: tuple[int, int, int] = (1, 0, 1)) -> Progress:
    """Train from the epoch after `progress`'s last up to `epochs`, scoring validation (and, for
    display, test) after each and calling on_epoch_end (which saves state and writes history).
    `trainer` gives what the optimiser steps through in each epoch (`model`'s DDP wrapper), if any. A model
    that changes what trains partway has a start_epoch(epoch) method, called before each epoch.
    `low_res` (size, epochs, full size): the first `epochs` epochs train at size x size pixels. One
    bar covers the whole run, and its first steps give the expected time of all of it (RunClock)."""
    size, low_epochs, full = low_res
    clock = RunClock(epochs, len(train), len(progress.history), show=group.is_main,
                     epoch_cost=lambda epoch: (size / full) ** 2 if epoch <= low_epochs else 1.0)
    try:
        return _epochs(model, optimizer, schedule, scaler, train, val, test, epochs, device, progress, on_epoch_end,
                       checkpoint, label_smoothing, precision, group, trainer, after_step, micro_batch, low_res, clock)
    finally:
        clock.close()


def _epochs(model, optimizer, schedule, scaler, train, val, test, epochs, device, progress, on_epoch_end, checkpoint,
            label_smoothing, precision, group, trainer, after_step, micro_batch, low_res, clock: RunClock) -> Progress:
    low_res_size, low_res_epochs, _ = low_res
    for epoch in range(len(progress.history) + 1, epochs + 1):
        began = time.perf_counter()
        train.set_epoch(epoch)
        if hasattr(model, "start_epoch"):
            model.start_epoch(epoch)
        lr = optimizer.param_groups[0]["lr"]
        try:
            stepped = model if trainer is None else trainer.for_epoch(epoch)
            train_loss, train_acc = train_epoch(stepped, train, optimizer, schedule, scaler, device, epoch,
                                                clock, label_smoothing, precision, group,
                                                progress.step_lrs, after_step, micro_batch,
                                                low_res_size if epoch <= low_res_epochs else None)
        except NonFiniteLoss as err:
            progress.failure = str(err)
            return progress
        progress.train_seconds += time.perf_counter() - began
        progress.estimated_seconds = progress.estimated_seconds or clock.estimate
        (val_loss, val_acc), (test_loss, test_acc) = group.decided_by_main(lambda: (
            score(model, val, device, precision) if val is not None else NO_SCORE,
            score(model, test, device, precision) if test is not None else NO_SCORE))
        schedule.step_epoch(val_loss)
        progress.record(EpochResult(epoch, train_loss, train_acc, val_loss, val_acc, test_loss, test_acc, lr),
                        model, checkpoint)
        shown = f"val loss {val_loss:.4f} acc {val_acc:6.2f}%" if val is not None else "no validation split"
        clock.bar.clear()
        group.say(f"epoch {epoch:3d}/{epochs}: train loss {train_loss:.4f} acc {train_acc:6.2f}% | {shown} | "
                  f"lr {lr:.5f} | {duration(time.perf_counter() - began)}")
        progress.epoch_seconds += time.perf_counter() - began
        on_epoch_end(progress)
    return progress
