"""The training step of a params.yaml, built once for the tools that time it (the benchmark, its
estimate, the profiler): the model in training's memory layout and precision, as it trains in a
given epoch, the optimiser of train.optimizer, training's batch path with its augmentations,
micro-batches and label smoothing, and torch.compile when train.compile asks for it. The images
are the caller's (synthetic), and the LR stays fixed (a schedule changes no step's cost)."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from cifarlab.config import Params
from cifarlab.feed.batches import Batches, resolve_workers, train_batches
from cifarlab.feed.device import make_scaler, memory_format, resolve_precision
from cifarlab.models.registry import build_model
from cifarlab.stats import Stats, channel_stats
from cifarlab.train.distributed import SINGLE, Group
from cifarlab.train.loop import train_epoch
from cifarlab.train.optim import make_optimizer
from cifarlab.train.schedule import Schedule


@dataclass
class TrainingStep:
    params: Params  # concrete: a named model and precision (the plan's choice, or a candidate of it)
    model: nn.Module
    precision: str
    optimizer: torch.optim.Optimizer
    schedule: Schedule
    device: torch.device
    epoch: int
    num_classes: int  # the data's: a network written as Net() for 3 classes builds only so

    def batches(self, steps: int, batch_size: int | None = None,
                wrap: Callable[[Batches], Batches] = lambda batches: batches) -> Batches:
        """`steps` batches of synthetic images on training's batch path."""
        batch_size = batch_size or self.params.train.batch_size
        rng = np.random.default_rng(0)
        size = self.params.data.image_size
        images = rng.integers(0, 256, (steps * batch_size, size, size, 3), dtype=np.uint8)
        labels = rng.integers(0, self.num_classes, len(images)).astype(np.int64)
        return wrap(self.batches_of(images, labels, channel_stats(images), batch_size=batch_size))

    def batches_of(self, images: np.ndarray, labels: np.ndarray, stats: Stats, loader: str | None = None,
                   batch_size: int | None = None, group: Group = SINGLE) -> Batches:
        """Training's batches of `images` (train.loader's path unless `loader` names the other), this
        process's share of them in a data-parallel `group`."""
        cfg = self.params.train
        return train_batches(loader or cfg.loader, images, labels, self.params.augment, stats,
                             batch_size or cfg.batch_size, 0, self.device, resolve_workers(cfg.workers), group.rank,
                             group.world)

    def run(self, batches: Batches, size: int | None = None, trainer: nn.Module | None = None,
            group: Group = SINGLE) -> None:
        """Train on `batches` as the train stage does (scaled to `size` px, as in a train.low_res
        epoch); `trainer` is the model wrapped for data-parallel training in `group`, if it is."""
        cfg = self.params.train
        train_epoch(trainer or self.model, batches, self.optimizer, self.schedule,
                    make_scaler(self.device, self.precision), self.device, self.epoch, None, cfg.label_smoothing,
                    self.precision, group, micro_batch=cfg.micro_batch, size=size, guard=False)


def training_step(params: Params, device: torch.device, num_classes: int, epoch: int = 1) -> TrainingStep:
    """The step of `params` (a named model) for data of `num_classes`, as it runs in `epoch` of the
    run (1-based: a model may train fewer parameters late in a run, see the models' start_epoch)."""
    cfg = params.train
    torch.manual_seed(0)
    model = build_model(params.model, num_classes, params.data.image_size)
    model = model.to(device, memory_format=memory_format(device))
    if hasattr(model, "start_epoch"):
        model.start_epoch(epoch)
    precision = resolve_precision(cfg.precision, device)
    optimizer = make_optimizer(model, cfg.optimizer, cfg.batch_size)
    schedule = Schedule(optimizer, cfg.scheduler.model_copy(update={"name": "none"}), 1, 1)
    if cfg.compile:
        model.compile()
    return TrainingStep(params, model, precision, optimizer, schedule, device, epoch, num_classes)
