"""Speed benchmark: `python -m cifarlab.bench`. Per model, on the current device, images/s of
(a) the data path alone (albumentations DataLoader and the device path), (b) a training step
alone on synthetic tensors, (c) a real training epoch with the device path and with a plain
reference loop in the seeds' style (DataLoader + albumentations + fp32 step), measured in the
same run so their ratio is fair; with MACs per image and the compute rate achieved."""
from __future__ import annotations

import argparse
import datetime
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import yaml

from cifarlab.augment import train_transform
from cifarlab.data.prepared import Prepared
from cifarlab.dataset import make_loader, make_loaders
from cifarlab.device import describe, select_device
from cifarlab.facts import macs_per_image
from cifarlab.models import build_model, model_names
from cifarlab.optim import Schedule, make_optimizer
from cifarlab.stats import channel_stats
from cifarlab.training import autocast, make_scaler, to_device, train_epoch

ROOT = Path(__file__).resolve().parents[2]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _rate(images: int, run, device: torch.device, repeats: int) -> float:
    """Images per second of run(): the median of `repeats` timed calls after an untimed warm-up."""
    run()
    rates = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        run()
        _sync(device)
        rates.append(images / (time.perf_counter() - start))
    return float(np.median(rates))


def _drain(loader) -> None:
    for images, _labels in loader:
        pass


def _step_rate(model, optimizer, device, batch_size: int, steps: int, repeats: int) -> float:
    images = torch.randn(batch_size, 3, 32, 32, device=device)
    labels = torch.randint(0, 10, (batch_size,), device=device)

    def run():
        for _ in range(steps):
            optimizer.zero_grad(set_to_none=True)
            with autocast(device):
                loss = F.cross_entropy(model(to_device(images, device)), labels)
            loss.backward()
            optimizer.step()
    return _rate(batch_size * steps, run, device, repeats)


def _reference_epoch(model, optimizer, loader, device) -> None:
    """The seeds' loop: per-image albumentations in a DataLoader, fp32, one .item() per step."""
    model.train()
    for images, labels in loader:
        images, labels = images.to(device), labels.to(device)
        optimizer.zero_grad()
        loss = F.cross_entropy(model(images), labels)
        loss.backward()
        optimizer.step()
        loss.item()


def bench_model(name: str, data: Prepared, params: dict, stats: dict, device: torch.device, steps: int,
                repeats: int) -> dict:
    cfg = {**params["train"], "optimizer": {**params["train"]["optimizer"], "lr": 1e-3}}  # speed, not learning
    torch.manual_seed(0)
    model = build_model(name, data.num_classes)
    macs = macs_per_image(model)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    model = model.to(device)
    optimizer = make_optimizer(model, cfg)
    schedule = Schedule(optimizer, {**cfg, "scheduler": {**cfg["scheduler"], "name": "none"}}, 1)
    albumentations = make_loader(data.x_train, data.y_train, train_transform(
        params["augment"], stats["mean"], stats["std"], 32, seed=0), cfg["batch_size"], shuffle=True)
    device_path, _ = make_loaders({**params, "train": {**cfg, "loader": "device"}}, data, stats, device)
    count = len(data.y_train)
    result = {
        "model": name, "macs_per_image": macs,
        "data_albumentations_img_s": _rate(count, lambda: _drain(albumentations), device, repeats),
        "data_device_img_s": _rate(count, lambda: _drain(device_path), device, repeats),
        "train_step_img_s": _step_rate(model, optimizer, device, cfg["batch_size"], steps, repeats),
        "epoch_device_path_img_s": _rate(count, lambda: train_epoch(
            model, device_path, optimizer, schedule, make_scaler(device), device, 1, f"{name} epoch"), device, repeats),
        "epoch_reference_img_s": _rate(count, lambda: _reference_epoch(model, optimizer, albumentations, device),
                                       device, repeats),
    }
    result["data_speedup"] = result["data_device_img_s"] / result["data_albumentations_img_s"]
    result["epoch_speedup"] = result["epoch_device_path_img_s"] / result["epoch_reference_img_s"]
    result["achieved_tflops"] = 6 * macs * result["epoch_device_path_img_s"] / 1e12  # fwd + bwd ~ 3x fwd
    return result


def markdown_table(results: list[dict]) -> str:
    lines = ["| model | MACs/img | data: albumentations | data: device path | train step | epoch: device path "
             "| epoch: reference | epoch speed-up | TFLOP/s |", "|---|" + "---:|" * 8]
    for r in results:
        lines.append(f"| {r['model']} | {r['macs_per_image'] / 1e6:.1f} M | {r['data_albumentations_img_s']:,.0f} | "
                     f"{r['data_device_img_s']:,.0f} | {r['train_step_img_s']:,.0f} | {r['epoch_device_path_img_s']:,.0f} | "
                     f"{r['epoch_reference_img_s']:,.0f} | {r['epoch_speedup']:.1f}x | {r['achieved_tflops']:.3f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m cifarlab.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="tiny,s9net,custom_resnet,resnet18",
                        help="comma-separated, from: " + ", ".join(model_names()))
    parser.add_argument("--images", type=int, default=1024, help="synthetic 32x32 training images per pass")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=5, help="synthetic training steps per timed call")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per figure (the median is kept)")
    parser.add_argument("--out", type=Path, help="JSON file for the results (default benchmarks/<device>.json)")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.models.split(",")) - set(model_names()))
    if unknown:
        parser.error(f"unknown models {', '.join(unknown)}; known: {', '.join(model_names())}")

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["train"]["batch_size"] = args.batch_size
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (args.images, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, args.images).astype(np.int64)
    data = Prepared(images, labels, images[:64], labels[:64], [str(i) for i in range(10)])
    mean, std = channel_stats(images)
    device = select_device()
    results = [bench_model(name, data, params, {"mean": mean, "std": std}, device, args.steps, args.repeats)
               for name in args.models.split(",")]
    report = {"date": datetime.date.today().isoformat(), "device": describe(device), "torch": torch.__version__,
              "threads": torch.get_num_threads(), "images": args.images, "batch_size": args.batch_size,
              "repeats": args.repeats,
              "augment": "crop(pad 4) + hflip + cutout 16 (params.yaml defaults)", "results": results}
    out = args.out or ROOT / "benchmarks" / f"{device.type}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"{report['date']}, {report['device']}, torch {report['torch']}, {report['threads']} threads, "
          f"{args.images} synthetic images, batch {args.batch_size}; images/s:")
    print(markdown_table(results))
    print(f"-> {out}")


if __name__ == "__main__":
    main()
