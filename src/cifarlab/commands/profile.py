"""`cifarlab profile`: where a training step of params.yaml's recipe spends its time on
this device, by kind of operator (torch.profiler), as a Markdown table. The steps run as the train
stage runs them (its model, batch size, micro-batches, precision, memory layout, optimiser, label
smoothing and batch path with its augmentations) on synthetic images, as in one epoch of the run
(by default the last: a model may train fewer parameters late in a run); warm-up steps are not
counted. On CUDA the profiler records the GPU's kernels too, and a row's time is the host's time
in it (kernels run asynchronously; the step's wall time waits for them)."""
from __future__ import annotations

import argparse
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch
from torch.autograd.profiler import record_function

from cifarlab.config import Params, load_params
from cifarlab.core.errors import run_command
from cifarlab.feed.device import select_device
from cifarlab.plan.choose import candidates, pick
from cifarlab.plan.run import sizes_here
from cifarlab.training_step import training_step

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


def profile_steps(params: Params, steps: int, epoch: int, num_classes: int, warmup: int = 1
                  ) -> tuple[dict[str, float], float]:
    """Seconds per training step by kind, the last row the wall time no operator accounts for (the
    rows add up to the step's wall time under the profiler), and images/s."""
    step = training_step(params, select_device(), num_classes, epoch)
    step.run(step.batches(warmup))
    batches = step.batches(steps, wrap=_LabelledBatches)
    activities = [torch.profiler.ProfilerActivity.CPU]
    if step.device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as profiler:
        began = time.perf_counter()
        step.run(batches)
        _sync(step.device)
        wall = (time.perf_counter() - began) / steps
    seconds: dict[str, float] = defaultdict(float)
    for event in profiler.events():
        seconds[kind_of(event)] += event.self_cpu_time_total / 1e6 / steps
    seconds = dict(sorted(seconds.items(), key=lambda item: -item[1]))
    seconds[OUTSIDE] = max(wall - sum(seconds.values()), 0.0)
    return seconds, params.train.batch_size / wall


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def profile_table(seconds: dict[str, float]) -> str:
    total = sum(seconds.values())
    lines = ["| kind | ms per step | share |", "|---|---:|---:|"]
    lines += [f"| {kind} | {1000 * value:,.0f} | {100 * value / total:.1f}% |" for kind, value in seconds.items()]
    return "\n".join(lines + [f"| all | {1000 * total:,.0f} | 100% |"])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="cifarlab profile", description=__doc__.split("\n\n")[0])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"), help="the recipe (default ./params.yaml)")
    parser.add_argument("--steps", type=int, default=3, help="profiled training steps, after one warm-up step")
    parser.add_argument("--epoch", type=int, help="profile steps as in this epoch of the run (default: its last)")
    args = parser.parse_args(argv)
    os.environ.setdefault("KINETO_LOG_LEVEL", "5")  # the profiler's own log: errors about absent GPUs on a CPU
    params, device = load_params(args.params), select_device()
    sizes, startup, _ = sizes_here(params)
    chosen, line = pick(candidates(params, sizes, device, startup), params)
    params = chosen.params
    print(line, file=sys.stderr)
    epoch = args.epoch or params.train.epochs
    seconds, rate = profile_steps(params, args.steps, epoch, sizes.classes)
    print(f"{params.model}, epoch {epoch}, batch {params.train.batch_size} in micro-batches of "
          f"{params.train.micro_batch}, {torch.get_num_threads()} threads, {args.steps} steps: {rate:,.0f} images/s "
          "under the profiler (which slows a step a little)")
    print(profile_table(seconds))


if __name__ == "__main__":
    sys.exit(run_command(main))
