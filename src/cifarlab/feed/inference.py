"""Running a trained model over batches: logits in order, loss and accuracy. Used by training
(each epoch's score), evaluation and the explanations, so accuracy is computed in one place."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cifarlab.feed.batches import Batches
from cifarlab.feed.device import autocast, to_device


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Percent of rows whose largest logit is the label."""
    return 100.0 * (logits.argmax(1) == labels).float().mean().item()


@torch.no_grad()
def predict(model: nn.Module, batches: Batches, device: torch.device,
            precision: str = "fp32") -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and labels for every sample of `batches`, in order, on the CPU."""
    model.eval()
    all_logits, all_labels = [], []
    for images, labels in batches:
        with autocast(device, precision):
            all_logits.append(model(to_device(images, device)).float().cpu())
        all_labels.append(labels.cpu())
    return torch.cat(all_logits), torch.cat(all_labels)


def score(model: nn.Module, batches: Batches, device: torch.device, precision: str = "fp32") -> tuple[float, float]:
    """Mean cross-entropy and accuracy (%) of `model` on `batches`."""
    logits, labels = predict(model, batches, device, precision)
    return F.cross_entropy(logits, labels).item(), accuracy(logits, labels)
