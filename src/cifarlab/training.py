"""The training loop: one epoch of SGD with a per-batch LR schedule, scoring, and fit() that
keeps the history and hands each epoch's result to a callback (checkpointing, plots)."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm


@dataclass
class EpochResult:
    epoch: int
    train_loss: float
    train_acc: float
    test_loss: float
    test_acc: float
    lr: float

    def as_row(self) -> dict:
        return asdict(self)


def make_optimizer(model: nn.Module, cfg: dict) -> torch.optim.Optimizer:
    opt = cfg["optimizer"]
    return torch.optim.SGD(model.parameters(), lr=opt["lr"], momentum=opt["momentum"],
                           weight_decay=opt["weight_decay"])


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: dict, steps_per_epoch: int):
    """A per-batch scheduler, or None for a constant LR."""
    sched = cfg["scheduler"]
    if sched["name"] == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=sched["max_lr"], epochs=cfg["epochs"], steps_per_epoch=steps_per_epoch,
            pct_start=sched["pct_start"])
    return None


def train_epoch(model: nn.Module, loader: DataLoader, optimizer, scheduler, device: torch.device,
                desc: str) -> tuple[float, float]:
    """One pass over `loader`; returns mean loss and accuracy (%). Shows a tqdm bar."""
    model.train()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    seen = 0
    bar = tqdm(loader, desc=desc, unit="batch", leave=False, dynamic_ncols=True)
    for step, (images, labels) in enumerate(bar, start=1):
        images, labels = images.to(device), labels.to(device)
        optimizer.zero_grad(set_to_none=True)
        logits = model(images)
        loss = F.cross_entropy(logits, labels)
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        loss_sum += loss.detach() * len(labels)
        correct += (logits.argmax(1) == labels).sum()
        seen += len(labels)
        if step % 10 == 0 or step == len(loader):
            bar.set_postfix(loss=f"{loss_sum.item() / seen:.4f}", acc=f"{100 * correct.item() / seen:.2f}%")
    return loss_sum.item() / seen, 100.0 * correct.item() / seen


@torch.no_grad()
def predict(model: nn.Module, loader: DataLoader, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and labels for every sample of `loader`, in order, on the CPU."""
    model.eval()
    all_logits, all_labels = [], []
    for images, labels in loader:
        all_logits.append(model(images.to(device)).float().cpu())
        all_labels.append(labels)
    return torch.cat(all_logits), torch.cat(all_labels)


def score(model: nn.Module, loader: DataLoader, device: torch.device) -> tuple[float, float]:
    """Mean cross-entropy and accuracy (%) of `model` on `loader`."""
    logits, labels = predict(model, loader, device)
    loss = F.cross_entropy(logits, labels).item()
    return loss, 100.0 * (logits.argmax(1) == labels).float().mean().item()


def fit(model: nn.Module, train_loader: DataLoader, test_loader: DataLoader, cfg: dict,
        device: torch.device, on_epoch_end: Callable[[EpochResult], None]) -> list[EpochResult]:
    """Train for cfg['epochs'] epochs, scoring the test split after each one."""
    optimizer = make_optimizer(model, cfg)
    scheduler = make_scheduler(optimizer, cfg, len(train_loader))
    history = []
    for epoch in range(1, cfg["epochs"] + 1):
        lr = optimizer.param_groups[0]["lr"]
        train_loss, train_acc = train_epoch(model, train_loader, optimizer, scheduler, device,
                                            f"epoch {epoch}/{cfg['epochs']}")
        test_loss, test_acc = score(model, test_loader, device)
        result = EpochResult(epoch, train_loss, train_acc, test_loss, test_acc, lr)
        history.append(result)
        print(f"epoch {epoch:3d}/{cfg['epochs']}: train loss {train_loss:.4f} acc {train_acc:6.2f}% | "
              f"test loss {test_loss:.4f} acc {test_acc:6.2f}% | lr {lr:.5f}", flush=True)
        on_epoch_end(result)
    return history
