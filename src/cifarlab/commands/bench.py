"""Speed benchmark: `cifarlab bench`. On the current device, images/s of (a) the data
path alone, albumentations DataLoader against the device path (once: it does not depend on the
model); per model, (b) a training step alone on synthetic tensors in the precision and layout
training uses, (c) a real training epoch on each loader (train.precision auto, channels-last,
params.yaml's workers) and with a plain reference loop in the style of course notebooks (DataLoader +
albumentations, workers 0, fp32, contiguous), taking turns in the same run so their ratio is fair;
the speed-up is params.yaml's loader against the reference; with MACs per image and the compute
rate. With --processes, also a default-path epoch trained data-parallel by 1, 2, ... processes;
with --stages, each pipeline stage's start-up (process start to main(): interpreter and imports).
With --estimate, only what a whole `dvc repro` of the params will take here, for every run the plan
stage may choose from (cifarlab.plan)."""
from __future__ import annotations

import argparse
import datetime
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import yaml

from cifarlab.config import AugmentConfig, Params, load_params
from cifarlab.core.errors import run_command
from cifarlab.core.io import check_output
from cifarlab.facts import macs_per_image
from cifarlab.feed.batches import resolve_workers, train_batches
from cifarlab.feed.device import describe, select_device
from cifarlab.models import model_names
from cifarlab.models.registry import build_model
from cifarlab.plan.choose import budget_seconds, candidates, fastest_precision, pick, table
from cifarlab.plan.run import sizes_here
from cifarlab.stats import Stats, channel_stats
from cifarlab.train import distributed
from cifarlab.train.optim import make_optimizer
from cifarlab.training_step import TrainingStep, training_step

CLASSES = 10  # the synthetic images stand in for CIFAR-10's


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _rates(images: int, runs: dict[str, Callable[[], object]], device: torch.device, repeats: int) -> dict[str, float]:
    """Images per second of each run(): the median of `repeats` timed calls after an untimed
    warm-up, the runs taking turns so that a slow spell of the machine hits them all alike."""
    for run in runs.values():
        run()
    rates: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            _sync(device)
            start = time.perf_counter()
            run()
            _sync(device)
            rates[name].append(images / (time.perf_counter() - start))
    return {name: float(np.median(values)) for name, values in rates.items()}


def _rate(images: int, run: Callable[[], object], device: torch.device, repeats: int) -> float:
    return _rates(images, {"run": run}, device, repeats)["run"]


def _drain(batches) -> None:
    for _batch in batches:
        pass


def _step_rate(step: TrainingStep, steps: int, repeats: int) -> float:
    """Images/s of training steps alone: the same synthetic tensors every step, no data path."""
    size = step.params.train.batch_size
    batch = (torch.randn(size, 3, 32, 32, device=step.device), torch.randint(0, CLASSES, (size,), device=step.device))
    return _rate(size * steps, partial(step.run, [batch] * steps), step.device, repeats)


def _step_of(params: Params, name: str, device: torch.device) -> TrainingStep:
    """Training's step of model `name` with params' recipe, in the precision the plan would pick here."""
    named = params.model_copy(update={"model": name})
    precision = fastest_precision(named, device, CLASSES)
    return training_step(named.model_copy(update={"train": named.train.model_copy(update={"precision": precision})}),
                         device, CLASSES)


def _reference_epoch(model, optimizer, batches, device) -> None:
    """A course notebook's loop: per-image albumentations in a DataLoader, fp32, one .item() per step."""
    model.train()
    for images, labels in batches:
        images, labels = images.to(device), labels.to(device)
        optimizer.zero_grad()
        loss = F.cross_entropy(model(images), labels)
        loss.backward()
        optimizer.step()
        loss.item()


def every_augmentation(augment: AugmentConfig) -> AugmentConfig:
    """`augment` with each augmentation applied at least half the time (the S8/S9 recipes' warps and gray too)."""
    return augment.model_copy(update={name: step.model_copy(update={"p": max(step.p, 0.5)})
                                      for name, step in augment if step.p < 0.5})


def describe_augment(augment: AugmentConfig) -> str:
    return ", ".join(f"{name} p={step.p:g}" for name, step in augment if step.p > 0) or "none"


def bench_data(images: np.ndarray, labels: np.ndarray, augment: AugmentConfig, stats: Stats, batch_size: int,
               device: torch.device, repeats: int) -> dict:
    """Images/s of the data path alone, albumentations (no workers) against the device path, with the
    same augmentations. It does not depend on the model, so it is measured once per augmentation set."""
    loaders = {loader: train_batches(loader, images, labels, augment, stats, batch_size, 0, device)
               for loader in ("albumentations", "device")}
    rates = _rates(len(labels), {loader: partial(_drain, batches) for loader, batches in loaders.items()},
                   device, repeats)
    return {"augment": describe_augment(augment), "albumentations_img_s": rates["albumentations"],
            "device_img_s": rates["device"], "speedup": rates["device"] / rates["albumentations"]}


# the report's key for a training epoch on each loader
EPOCH_RATE_KEYS = {"albumentations": "epoch_albumentations_img_s", "device": "epoch_device_path_img_s"}


def bench_model(name: str, images: np.ndarray, labels: np.ndarray, params: Params, stats: Stats,
                device: torch.device, steps: int, repeats: int) -> dict:
    cfg = params.train
    step = _step_of(params, name, device)
    torch.manual_seed(0)
    reference = build_model(name, CLASSES)
    macs = macs_per_image(reference)
    reference = reference.to(device)
    reference_optimizer = make_optimizer(reference, cfg.optimizer.model_copy(update={"lr": 1e-3, "decoupled": False}),
                                         cfg.batch_size)
    reference_batches = train_batches("albumentations", images, labels, params.augment, stats, cfg.batch_size, 0,
                                      device)
    epochs = _rates(len(labels), {
        **{key: partial(step.run, step.batches_of(images, labels, stats, loader))
           for loader, key in EPOCH_RATE_KEYS.items()},
        "epoch_reference_img_s": partial(_reference_epoch, reference, reference_optimizer, reference_batches, device),
    }, device, repeats)
    result = {"model": name, "macs_per_image": macs, "precision": step.precision,
              "train_step_img_s": _step_rate(step, steps, repeats), **epochs}
    default = EPOCH_RATE_KEYS[cfg.loader]
    result["epoch_speedup"] = result[default] / result["epoch_reference_img_s"]
    result["achieved_tflops"] = 6 * macs * result[default] / 1e12  # fwd + bwd ~ 3x fwd
    return result


def parallel_epoch_rate(name: str, images: np.ndarray, labels: np.ndarray, params: Params, stats: Stats,
                        repeats: int) -> float:
    """Images/s of a default-path training epoch in this process: one rank of a data-parallel
    run when a launcher started it (each rank trains its part of every global batch), else alone."""
    group = distributed.from_env()
    device = select_device(group.local_rank)
    with distributed.joined(group, device):
        step = _step_of(params, name, device)
        trainer = distributed.DataParallel(step.model, device).for_epoch(1) if group.active else step.model
        batches = step.batches_of(images, labels, stats, group=group)
        return _rate(len(labels), partial(step.run, batches, trainer=trainer, group=group), device, repeats)


def processes_rates(name: str, images: np.ndarray, labels: np.ndarray, params: Params, stats: Stats,
                    repeats: int, counts: list[int]) -> dict[str, float]:
    """Epoch images/s with each number of processes in `counts` (rank 0's timing: it waits for
    the others at every step)."""
    args = (name, images, labels, params, stats, repeats)
    return {f"{n}_processes_img_s": (parallel_epoch_rate(*args) if n == 1 else
                                     distributed.launch(n, parallel_epoch_rate, *args)[0]) for n in counts}


def stage_startups(root: Path, repeats: int) -> dict[str, float]:
    """Seconds from a stage's process start to its main() (interpreter, imports, module set-up),
    the median of `repeats`: what every `dvc repro` of the stage pays before it does any work."""
    code = "import runpy, sys; runpy.run_path(sys.argv[1])"  # main() runs only under __main__
    seconds = {}
    for name in yaml.safe_load((root / "dvc.yaml").read_text())["stages"]:
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            subprocess.run([sys.executable, "-c", code, str(root / "stages" / f"{name}.py")], check=True, cwd=root)
            times.append(time.perf_counter() - start)
        seconds[name] = statistics.median(times)
    return seconds


def startup_table(seconds: dict[str, float]) -> str:
    lines = ["| stage | start-up (s) |", "|---|---:|"]
    lines += [f"| {name} | {value:.2f} |" for name, value in seconds.items()]
    return "\n".join(lines + [f"| all {len(seconds)} | {sum(seconds.values()):.2f} |"])


def data_table(results: list[dict]) -> str:
    lines = ["| augmentations | albumentations | device path | speed-up |", "|---|---:|---:|---:|"]
    lines += [f"| {r['augment']} | {r['albumentations_img_s']:,.0f} | {r['device_img_s']:,.0f} | {r['speedup']:.1f}x |"
              for r in results]
    return "\n".join(lines)


def markdown_table(results: list[dict], loader: str) -> str:
    lines = ["| model | precision | MACs/img | train step | epoch: albumentations path | epoch: device path "
             f"| epoch: reference | epoch speed-up ({loader} / reference) | TFLOP/s |",
             "|---|---|" + "---:|" * 7]
    for r in results:
        lines.append(f"| {r['model']} | {r['precision']} | {r['macs_per_image'] / 1e6:.1f} M | "
                     f"{r['train_step_img_s']:,.0f} | {r['epoch_albumentations_img_s']:,.0f} | "
                     f"{r['epoch_device_path_img_s']:,.0f} | "
                     f"{r['epoch_reference_img_s']:,.0f} | {r['epoch_speedup']:.2f}x | {r['achieved_tflops']:.3f} |")
    return "\n".join(lines)


def processes_table(results: list[dict], counts: list[int]) -> str:
    lines = ["| model | " + " | ".join(f"{n} process{'es' if n > 1 else ''}" for n in counts) + " |",
             "|---|" + "---:|" * len(counts)]
    for r in results:
        lines.append(f"| {r['model']} | " + " | ".join(f"{r[f'{n}_processes_img_s']:,.0f}" for n in counts) + " |")
    return "\n".join(lines)


def print_estimate(params: Params, device: torch.device) -> None:
    """Every run the plan stage may choose from, priced here, and the one it would choose: on the
    prepared data if the download stage has run, else on CIFAR-10's sizes (or the subset's)."""
    sizes, startup, where = sizes_here(params)
    priced = candidates(params, sizes, device, startup, stop_at_fit=False)
    _, line = pick(priced, params)
    print(f"what `dvc repro` of these params takes here ({describe(device)}, {torch.get_num_threads()} threads), "
          f"from a few training steps of each run the plan may choose, on {where}:")
    print(table(priced, budget_seconds(params)))
    print(line.replace("plan: ", "the plan stage would train ", 1))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="cifarlab bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="airbench94,tiny,s9net,custom_resnet,resnet18",
                        help="comma-separated, from: " + ", ".join(model_names()))
    parser.add_argument("--images", type=int, default=1024, help="synthetic 32x32 training images per pass")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=5, help="synthetic training steps per timed call")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per figure (the median is kept)")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"),
                        help="augmentations and optimiser settings from this file (default: ./params.yaml)")
    parser.add_argument("--processes", default="1",
                        help="comma-separated process counts, e.g. 1,2: also time a data-parallel epoch with each")
    parser.add_argument("--stages", action="store_true",
                        help="also time each stage's start-up (stages/*.py in dvc.yaml, from the current folder)")
    parser.add_argument("--out", type=Path, help="JSON file for the results (default benchmarks/<device>.json)")
    parser.add_argument("--estimate", action="store_true",
                        help="only estimate a whole `dvc repro` of --params here (under a minute), and which of "
                             "the plan stage's choices fits plan.budget_minutes")
    args = parser.parse_args(argv)
    if args.out is not None:
        check_output("--out", args.out)  # before any work; a refusal is run_command's one line
    if args.estimate:
        print_estimate(load_params(args.params), select_device())
        return
    unknown = sorted(set(args.models.split(",")) - set(model_names()))
    if unknown:
        parser.error(f"unknown models {', '.join(unknown)}; known: {', '.join(model_names())}")

    params = load_params(args.params)
    params = params.model_copy(update={"train": params.train.model_copy(update={"batch_size": args.batch_size})})
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (args.images, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, CLASSES, args.images).astype(np.int64)
    device = select_device()
    counts = [int(n) for n in args.processes.split(",")]
    stats = channel_stats(images)
    data = [bench_data(images, labels, augment, stats, args.batch_size, device, args.repeats)
            for augment in (params.augment, every_augmentation(params.augment))]
    results = [bench_model(name, images, labels, params, stats, device, args.steps, args.repeats)
               for name in args.models.split(",")]
    if counts != [1]:
        for result in results:
            result.update(processes_rates(result["model"], images, labels, params, stats, args.repeats, counts))
    report = {"date": datetime.date.today().isoformat(), "device": describe(device), "torch": torch.__version__,
              "threads": torch.get_num_threads(), "images": args.images, "batch_size": args.batch_size,
              "repeats": args.repeats,
              "loader": params.train.loader, "workers": resolve_workers(params.train.workers),
              "augment": describe_augment(params.augment), "data": data, "results": results}
    if args.stages:
        report["stage_startup_s"] = stage_startups(Path.cwd(), args.repeats)
    out = args.out or Path("benchmarks") / f"{device.type}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"{report['date']}, {report['device']}, torch {report['torch']}, {report['threads']} threads, "
          f"{args.images} synthetic images, batch {args.batch_size}; images/s:")
    print("\ndata path alone (the same for every model):")
    print(data_table(data))
    print("\ntraining, per model:")
    print(markdown_table(results, params.train.loader))
    if counts != [1]:
        print("\ndata-parallel training epoch (default path), images/s:")
        print(processes_table(results, counts))
    if args.stages:
        print("\nstage start-up, process start to main(), seconds:")
        print(startup_table(report["stage_startup_s"]))
    print(f"-> {out}")


if __name__ == "__main__":
    sys.exit(run_command(main))
