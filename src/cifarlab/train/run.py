"""The training run as one library call, used by the train stage, the tests and the benchmark:
seeding, model and layout, batches, the LR range test, resume, the loop, and the best weights."""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from cifarlab.data.batches import eval_batches, train_batches
from cifarlab.data.prepared import Prepared
from cifarlab.data.stats import Stats
from cifarlab.device import describe, make_scaler, memory_format, select_device
from cifarlab.models import build_model
from cifarlab.models.facts import macs_per_image, parameter_count, receptive_field
from cifarlab.train.loop import EpochResult, Progress, fit
from cifarlab.train.lr_finder import RangeTest, choose_max_lr
from cifarlab.train.optim import make_optimizer
from cifarlab.train.resume import fingerprint, load_resume_state, restore, save_state
from cifarlab.train.schedule import Schedule

if TYPE_CHECKING:
    from cifarlab.config import Params


@dataclass
class TrainResult:
    model: nn.Module  # holding the best weights
    history: list[EpochResult]
    best_epoch: int
    best_acc: float
    max_lr: float | None
    sweep: RangeTest | None
    facts: dict  # parameters, MACs per image, receptive field
    device: str
    seconds: float
    failure: str | None  # set when a NaN/inf loss stopped training early


def run(params: Params, data: Prepared, stats: Stats, state_path: Path | None = None,
        on_epoch_end: Callable[[list[EpochResult]], None] = lambda history: None,
        device: torch.device | None = None) -> TrainResult:
    """Train params.model on `data` as params.train says. With `state_path`, the state is saved
    after every epoch and a matching saved state is resumed from; it is deleted on success."""
    cfg = params.train
    device = device or select_device()
    torch.manual_seed(cfg.seed)
    model = build_model(params.model, data.num_classes)
    facts = {"params": parameter_count(model), "macs": macs_per_image(model, data.x_train.shape[1]),
             "receptive_field": receptive_field(model)}
    model = model.to(device, memory_format=memory_format(device))
    print(f"model {params.model}: {facts['params']:,} parameters, {facts['macs']:,} MACs/image, "
          f"receptive field {facts['receptive_field']} px; on {describe(device)}", flush=True)
    train = train_batches(cfg.loader, data.x_train, data.y_train, params.augment, stats, cfg.batch_size, cfg.seed,
                          device)
    monitor = eval_batches(data.x_test, data.y_test, stats, params.evaluate.batch_size, device, cfg.loader)
    if cfg.compile:
        model.compile()
    optimizer = make_optimizer(model, cfg.optimizer)
    key = fingerprint([params.model, params.augment.model_dump(), cfg.model_dump(),
                       params.evaluate.batch_size, stats.mean, stats.std],
                      [data.x_train, data.y_train, data.x_test, data.y_test], model)
    state = load_resume_state(state_path, key) if state_path is not None else None
    if state is None:
        max_lr, sweep = choose_max_lr(cfg.scheduler, cfg.lr_finder, model, optimizer, train, device)
    else:
        max_lr, sweep = state["extras"]["max_lr"], _sweep(state["extras"]["sweep"])
    schedule = Schedule(optimizer, cfg.scheduler, cfg.epochs, len(train), max_lr)
    progress = Progress()
    if state is not None:
        progress = restore(state, model, optimizer, schedule)
        print(f"resuming after epoch {state['epoch']} of {cfg.epochs}", flush=True)

    def epoch_done(progress: Progress) -> None:
        if state_path is not None:
            save_state(state_path, key, model, optimizer, schedule, progress,
                       {"max_lr": max_lr, "sweep": None if sweep is None else vars(sweep)})
        on_epoch_end(progress.history)

    start = time.perf_counter()
    progress = fit(model, optimizer, schedule, make_scaler(device), train, monitor, cfg.epochs, device, progress,
                   epoch_done, cfg.label_smoothing)
    seconds = time.perf_counter() - start
    if progress.best_weights is not None:
        model.load_state_dict(progress.best_weights)
    if progress.failure is None and state_path is not None:
        state_path.unlink(missing_ok=True)
    return TrainResult(model, progress.history, progress.best_epoch, progress.best_acc, max_lr, sweep, facts,
                       describe(device), seconds, progress.failure)


def _sweep(saved: dict | None) -> RangeTest | None:
    return None if saved is None else RangeTest(**saved)
