"""The training loop. Each epoch's shuffling and augmentation are seeded from (seed, epoch), and
the full state is saved after every epoch, so a run cut short resumes to the same result."""
from __future__ import annotations

import contextlib
import copy
import functools
import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from cifarlab.errors import UserError
from cifarlab.io import save_torch, update_digest
from cifarlab.optim import Schedule


class NonFiniteLoss(UserError):
    """The loss became NaN or infinite: training cannot continue."""


@dataclass
class EpochResult:
    epoch: int
    train_loss: float
    train_acc: float
    test_loss: float
    test_acc: float
    lr: float


@dataclass
class Progress:
    """What a run has achieved so far; saved with the resume state."""
    history: list[EpochResult] = field(default_factory=list)
    best_epoch: int = 0
    best_acc: float = -1.0
    best_weights: dict | None = None


@functools.cache
def _half_dtype(device: torch.device) -> torch.dtype | None:
    """bf16 on CUDA where supported, else fp16 on CUDA; None (full precision) elsewhere."""
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def autocast(device: torch.device):
    """Mixed-precision autocast on CUDA; full precision elsewhere."""
    dtype = _half_dtype(device)
    return contextlib.nullcontext() if dtype is None else torch.autocast("cuda", dtype=dtype)


def to_device(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Move a batch of images; channels-last on CUDA, where convolutions run faster that way."""
    layout = torch.channels_last if device.type == "cuda" else torch.preserve_format
    return images.to(device, non_blocking=True, memory_format=layout)


def reseed(loader, seed: int, epoch: int) -> None:
    """Make the epoch's shuffle and augmentation depend only on (seed, epoch)."""
    value = seed * 1000 + epoch
    if hasattr(loader, "reseed"):  # the device data path
        loader.reseed(value)
        return
    if loader.generator is not None:
        loader.generator.manual_seed(value)
    loader.dataset.transform.set_random_seed(value)


def make_scaler(device: torch.device) -> torch.amp.GradScaler:
    """Loss scaling for fp16 autocast; a pass-through for bf16 and full precision."""
    return torch.amp.GradScaler(device.type, enabled=_half_dtype(device) == torch.float16)


def _check_finite(loss_sum: float, epoch: int, step: int) -> None:
    if not math.isfinite(loss_sum):
        raise NonFiniteLoss(f"loss became NaN/inf in epoch {epoch} by batch {step}; the learning "
                            "rate is probably too high (lower train.optimizer.lr or the scheduler's max_lr)")


def train_epoch(model: nn.Module, loader: DataLoader, optimizer, schedule: Schedule, scaler: torch.amp.GradScaler,
                device: torch.device, epoch: int, desc: str, label_smoothing: float = 0.0) -> tuple[float, float]:
    """One pass over `loader`; returns mean loss and accuracy (%). Shows a tqdm bar."""
    model.train()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    seen = 0
    with tqdm(loader, desc=desc, unit="batch", leave=False, dynamic_ncols=True) as bar:
        for step, (images, labels) in enumerate(bar, start=1):
            images, labels = to_device(images, device), labels.to(device, non_blocking=True)
            optimizer.zero_grad(set_to_none=True)
            with autocast(device):
                logits = model(images)
                loss = F.cross_entropy(logits, labels, label_smoothing=label_smoothing)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            schedule.step_batch()
            loss_sum += loss.detach().float() * len(labels)
            correct += (logits.argmax(1) == labels).sum()
            seen += len(labels)
            if step % 20 == 0 or step == len(loader) or device.type == "cpu":  # a host sync: not every step on GPUs
                total = loss_sum.item()
                _check_finite(total, epoch, step)
                bar.set_postfix(loss=f"{total / seen:.4f}", acc=f"{100 * correct.item() / seen:.2f}%")
    return loss_sum.item() / seen, 100.0 * correct.item() / seen


@torch.no_grad()
def predict(model: nn.Module, loader: DataLoader, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and labels for every sample of `loader`, in order, on the CPU."""
    model.eval()
    all_logits, all_labels = [], []
    for images, labels in loader:
        with autocast(device):
            all_logits.append(model(to_device(images, device)).float().cpu())
        all_labels.append(labels)
    return torch.cat(all_logits), torch.cat(all_labels)


def score(model: nn.Module, loader: DataLoader, device: torch.device) -> tuple[float, float]:
    """Mean cross-entropy and accuracy (%) of `model` on `loader`."""
    logits, labels = predict(model, loader, device)
    loss = F.cross_entropy(logits, labels).item()
    return loss, 100.0 * (logits.argmax(1) == labels).float().mean().item()


def _save_state(path: Path, fingerprint: str, epoch: int, model, optimizer, schedule, progress,
                max_lr) -> None:
    save_torch(path, {
        "fingerprint": fingerprint, "epoch": epoch, "max_lr": max_lr,
        "model": model.state_dict(), "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
        "torch_rng": torch.get_rng_state(), "history": [asdict(r) for r in progress.history],
        "best_epoch": progress.best_epoch, "best_acc": progress.best_acc, "best_weights": progress.best_weights,
    })


def run_fingerprint(params: dict, *files: Path) -> str:
    """What makes two runs the same: the params that train reads and the input files' bytes."""
    digest = hashlib.sha256(json.dumps([params[k] for k in ("model", "augment", "train")],
                                       sort_keys=True).encode())
    for path in files:
        update_digest(digest, path)
    return digest.hexdigest()


def load_resume_state(path: Path, fingerprint: str) -> dict | None:
    """The saved state of an interrupted run with the same fingerprint, else None."""
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # an unreadable state is only a lost shortcut: start over
        return None
    return state if state.get("fingerprint") == fingerprint else None


def fit(model: nn.Module, optimizer: torch.optim.Optimizer, train_loader: DataLoader,
        test_loader: DataLoader, cfg: dict, device: torch.device,
        on_epoch_end: Callable[[EpochResult, Progress], None], max_lr: float | None = None,
        state_path: Path | None = None, fingerprint: str = "", resume: dict | None = None) -> Progress:
    """Train for cfg['epochs'] epochs, scoring the test split after each and keeping the best
    weights; with `resume` (from load_resume_state) it carries on after the saved epoch."""
    schedule = Schedule(optimizer, cfg, len(train_loader), max_lr)
    scaler = make_scaler(device)
    progress, start = Progress(), 1
    if resume is not None:
        model.load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        schedule.load_state_dict(resume["schedule"])
        torch.set_rng_state(resume["torch_rng"])
        progress = Progress([EpochResult(**row) for row in resume["history"]], resume["best_epoch"],
                            resume["best_acc"], resume["best_weights"])
        start = resume["epoch"] + 1
        print(f"resuming after epoch {resume['epoch']} of {cfg['epochs']}", flush=True)
    for epoch in range(start, cfg["epochs"] + 1):
        reseed(train_loader, cfg["seed"], epoch)
        lr = optimizer.param_groups[0]["lr"]
        try:
            train_loss, train_acc = train_epoch(model, train_loader, optimizer, schedule, scaler, device, epoch,
                                                f"epoch {epoch}/{cfg['epochs']}", cfg["label_smoothing"])
        except NonFiniteLoss as err:
            err.progress = progress  # the caller keeps the best checkpoint so far
            raise
        test_loss, test_acc = score(model, test_loader, device)
        schedule.step_epoch(test_loss)
        result = EpochResult(epoch, train_loss, train_acc, test_loss, test_acc, lr)
        progress.history.append(result)
        if test_acc > progress.best_acc:
            progress.best_epoch, progress.best_acc = epoch, test_acc
            progress.best_weights = copy.deepcopy({k: v.cpu() for k, v in model.state_dict().items()})
        print(f"epoch {epoch:3d}/{cfg['epochs']}: train loss {train_loss:.4f} acc {train_acc:6.2f}% | "
              f"test loss {test_loss:.4f} acc {test_acc:6.2f}% | lr {lr:.5f}", flush=True)
        if state_path is not None:
            _save_state(state_path, fingerprint, epoch, model, optimizer, schedule, progress, max_lr)
        on_epoch_end(result, progress)
    return progress
