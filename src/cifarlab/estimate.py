"""`python -m cifarlab.bench --estimate`: what a whole `dvc repro` of params.yaml will take on this
machine, measured in well under a minute, before it is run; and, for `model: auto`, both of its
choices, with which of them fits a 20-minute budget here. Training's time comes from a few
training steps of each choice as the train stage takes them (training_step.py); the other stages'
from the model's inference speed and a fixed part for what no model does (decoding the images,
ROAD's imputation, the report)."""
from __future__ import annotations

import time

import torch

from cifarlab.config import AUTO, Params
from cifarlab.feed.batches import steps_per_pass
from cifarlab.feed.device import autocast, fp32_on_cpu
from cifarlab.train.clock import duration
from cifarlab.training_step import training_step

BUDGET_SECONDS = 20 * 60  # the whole `dvc repro` a user should wait on a laptop
CIFAR_IMAGES = {"train": 50_000, "test": 10_000}  # a subset of 0 means all of them
TIMED_STEPS = 2  # after one warm-up micro-batch
TTA_PASSES = {"none": 1, "flip": 2, "flip_translate": 6}  # forward passes over the test split (evaluate/scoring.py)
ROAD_ORDERS = 3  # ROAD scores each fraction removed in three orders: most relevant first, least, random
# Seconds of a `dvc repro` that no model inference accounts for: decoding 60,000 JPEG images, the
# statistics, ROAD's imputation, the figures, the report and eight processes' start-up. The whole
# rest of the pipeline took 61-68 s on the Intel Xeon (bf16) and 108-118 s on the AVX2 proxy
# (fp32), where this constant plus the measured inference gave 123 s (docs/results.md).
FIXED_SECONDS = 75


def choices(params: Params) -> list[tuple[Params, bool]]:
    """The concrete params a run of `params` may train, each with whether it is auto's choice for a
    CPU in fp32: both of auto's, or the named model alone."""
    if params.model != AUTO:
        return [(params, False)]
    return [(params.for_hardware(False), False), (params.for_hardware(True), True)]


def _inference_rate(step, images: int = 500) -> float:
    model = step.model.eval()
    batch = torch.randn(images, 3, 32, 32, device=step.device).contiguous(memory_format=torch.channels_last)
    with torch.no_grad(), autocast(step.device, step.precision):
        model(batch)
        began = time.perf_counter()
        model(batch)
        seconds = time.perf_counter() - began
    model.train()
    return images / seconds


def estimate(params: Params, device: torch.device) -> dict:
    """Seconds of training and of the rest of `dvc repro` for these concrete params here."""
    cfg, data = params.train, params.data
    step = training_step(params, device)
    low_epochs = min(cfg.low_res.epochs, cfg.epochs)
    sizes = {None: cfg.epochs - low_epochs, cfg.low_res.size: low_epochs}  # image size: epochs at it
    steps = steps_per_pass((data.subset.train or CIFAR_IMAGES["train"]) - data.val, cfg.batch_size, cfg.processes,
                           training=True)
    train_seconds = 0.0
    for size, epochs in sizes.items():
        if epochs:
            step.run(step.batches(1, batch_size=cfg.micro_batch or cfg.batch_size), size)  # builds kernels
            batches = step.batches(TIMED_STEPS)
            began = time.perf_counter()
            step.run(batches, size)
            train_seconds += (time.perf_counter() - began) / TIMED_STEPS * steps * epochs
    test_images = data.subset.test or CIFAR_IMAGES["test"]
    road = params.gradcam.faithfulness
    passes = (test_images * TTA_PASSES[params.evaluate.tta]
              + road.images * len(road.fractions) * ROAD_ORDERS * len(params.explained_layers()))
    rest = FIXED_SECONDS + passes / _inference_rate(step)
    return {"model": params.model, "epochs": cfg.epochs, "precision": step.precision, "train_seconds": train_seconds,
            "rest_seconds": rest, "total_seconds": train_seconds + rest}


def estimate_table(params: Params, device: torch.device) -> tuple[str, list[dict]]:
    here = fp32_on_cpu(params.train.precision, device)
    rows = []
    for concrete, for_fp32_cpu in choices(params):
        row = estimate(concrete, device)
        row["chosen_here"] = params.model != AUTO or for_fp32_cpu == here
        rows.append(row)
    lines = ["| model | epochs | precision | training | rest of `dvc repro` | whole `dvc repro` | "
             f"fits {BUDGET_SECONDS // 60} min |", "|---|---:|---|---:|---:|---:|---|"]
    for row in rows:
        name = row["model"] + (" (what `dvc repro` trains here)" if row["chosen_here"] and params.model == AUTO else "")
        lines.append(f"| {name} | {row['epochs']} | {row['precision']} | {duration(row['train_seconds'])} | "
                     f"{duration(row['rest_seconds'])} | {duration(row['total_seconds'])} | "
                     f"{'yes' if row['total_seconds'] <= BUDGET_SECONDS else 'no'} |")
    return "\n".join(lines), rows
