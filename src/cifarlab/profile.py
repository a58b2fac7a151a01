"""`python -m cifarlab.profile`: where a training step of params.yaml's recipe spends its time on
this device, by kind of operator (torch.profiler), as a Markdown table. The steps run as the train
stage runs them (its model, batch size, micro-batches, precision, memory layout, optimiser, label
smoothing and batch path with its augmentations) on synthetic images, as in one epoch of the run
(by default the last: a model may train fewer parameters late in a run); warm-up steps are not
counted."""
from __future__ import annotations

import argparse
import os
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from torch.autograd.profiler import record_function

from cifarlab.config import Params, load_params
from cifarlab.feed.batches import resolve_workers, train_batches
from cifarlab.feed.device import make_scaler, memory_format, resolve_precision, select_device
from cifarlab.models import build_model
from cifarlab.stats import channel_stats
from cifarlab.train.loop import train_epoch
from cifarlab.train.optim import make_optimizer
from cifarlab.train.schedule import Schedule

OUTSIDE = "outside any operator (Python, waiting)"  # the step's wall time that no profiled event covers
BATCH_RANGE = "batch"  # our label around fetching each batch: augmentation and batching
# time under these ranges counts as theirs, whatever operators run inside
RANGES = {"Optimizer.step": "optimiser step (all of it)", BATCH_RANGE: "augmentation and batching"}
# other operators by name, lower-cased; the first match wins, forward and backward alike
KINDS = (
    ("convolutions", ("conv",)),
    ("BatchNorm", ("batch_norm", "batchnorm")),
    ("GELU", ("gelu",)),
    ("pooling", ("pool",)),
    ("loss", ("cross_entropy", "log_softmax", "nll_loss")),
    ("matrix multiplies (head)", ("mm", "linear", "matmul")),
    ("precision and layout copies", ("copy", "_to_", "contiguous", "clone")),
    ("host syncs", ("item", "local_scalar_dense", "tolist")),
)


class _LabelledBatches:
    """`batches` with each fetch inside a profiler range, so augmentation shows as one row."""

    def __init__(self, batches) -> None:
        self.batches = batches

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        batches = iter(self.batches)
        while True:
            with record_function(BATCH_RANGE):
                batch = next(batches, None)
            if batch is None:
                return
            yield batch


def kind_of(event) -> str:
    """The row an event's own time goes to: the range it runs under, else its operator's kind."""
    parent = event
    while parent is not None:
        for prefix, row in RANGES.items():
            if parent.name.startswith(prefix):
                return row
        parent = parent.cpu_parent
    name = event.name.lower()
    return next((row for row, parts in KINDS if any(part in name for part in parts)), "other")


def profile_steps(params: Params, steps: int, epoch: int, warmup: int = 1) -> tuple[dict[str, float], float]:
    """Seconds per training step by kind, the last row the wall time no operator accounts for (the
    rows add up to the step's wall time under the profiler), and images/s."""
    cfg, device = params.train, select_device()
    torch.manual_seed(0)
    model = build_model(params.model, 10).to(device, memory_format=memory_format(device))
    if hasattr(model, "start_epoch"):
        model.start_epoch(epoch)
    precision = resolve_precision(cfg.precision, device, getattr(model, "bf16_on_cpu", True))
    optimizer = make_optimizer(model, cfg.optimizer, cfg.batch_size)
    schedule = Schedule(optimizer, cfg.scheduler.model_copy(update={"name": "none"}), 1, 1)
    rng = np.random.default_rng(0)

    def run(count: int) -> None:
        images = rng.integers(0, 256, (count * cfg.batch_size, 32, 32, 3), dtype=np.uint8)
        labels = rng.integers(0, 10, len(images)).astype(np.int64)
        batches = train_batches(cfg.loader, images, labels, params.augment, channel_stats(images), cfg.batch_size, 0,
                                device, resolve_workers(cfg.workers))
        train_epoch(model, _LabelledBatches(batches), optimizer, schedule, make_scaler(device, precision), device,
                    epoch, "profile", cfg.label_smoothing, precision, micro_batch=cfg.micro_batch)
    run(warmup)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profiler:
        began = time.perf_counter()
        run(steps)
        wall = (time.perf_counter() - began) / steps
    seconds: dict[str, float] = defaultdict(float)
    for event in profiler.events():
        seconds[kind_of(event)] += event.self_cpu_time_total / 1e6 / steps
    seconds = dict(sorted(seconds.items(), key=lambda item: -item[1]))
    seconds[OUTSIDE] = max(wall - sum(seconds.values()), 0.0)
    return seconds, cfg.batch_size / wall


def profile_table(seconds: dict[str, float]) -> str:
    total = sum(seconds.values())
    lines = ["| kind | ms per step | share |", "|---|---:|---:|"]
    lines += [f"| {kind} | {1000 * value:,.0f} | {100 * value / total:.1f}% |" for kind, value in seconds.items()]
    return "\n".join(lines + [f"| all | {1000 * total:,.0f} | 100% |"])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m cifarlab.profile", description=__doc__.split("\n\n")[0])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"), help="the recipe (default ./params.yaml)")
    parser.add_argument("--steps", type=int, default=3, help="profiled training steps, after one warm-up step")
    parser.add_argument("--epoch", type=int, help="profile steps as in this epoch of the run (default: its last)")
    args = parser.parse_args(argv)
    os.environ.setdefault("KINETO_LOG_LEVEL", "5")  # the profiler's own log: errors about absent GPUs on a CPU
    params = load_params(args.params)
    epoch = args.epoch or params.train.epochs
    seconds, rate = profile_steps(params, args.steps, epoch)
    print(f"{params.model}, epoch {epoch}, batch {params.train.batch_size} in micro-batches of "
          f"{params.train.micro_batch}, {torch.get_num_threads()} threads, {args.steps} steps: {rate:,.0f} images/s "
          "under the profiler (which slows a step a little)")
    print(profile_table(seconds))


if __name__ == "__main__":
    main()
