"""Scoring a model's test-split predictions: accuracy, loss, per-class accuracy, confusion."""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F


def predictions_table(logits: torch.Tensor, labels: torch.Tensor, classes: list[str]) -> pd.DataFrame:
    """One row per test image: index, actual/predicted (names and ids) and confidence."""
    probs = F.softmax(logits.float(), dim=1)
    confidence, predicted = probs.max(dim=1)
    names = np.array(classes)
    return pd.DataFrame({
        "index": np.arange(len(labels)),
        "actual": names[labels.numpy()],
        "predicted": names[predicted.numpy()],
        "actual_id": labels.numpy(),
        "predicted_id": predicted.numpy(),
        "confidence": confidence.numpy().round(6),
    })


def confusion_matrix(actual: np.ndarray, predicted: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts with rows = actual class, columns = predicted class."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (actual, predicted), 1)
    return matrix


def summary_metrics(logits: torch.Tensor, labels: torch.Tensor, classes: list[str]) -> dict:
    """Test accuracy (%), mean cross-entropy, image count and accuracy per class."""
    predicted = logits.argmax(dim=1)
    correct = (predicted == labels)
    per_class = {}
    for index, name in enumerate(classes):
        members = labels == index
        per_class[name] = round(100.0 * correct[members].float().mean().item(), 2) if members.any() else None
    return {
        "accuracy": round(100.0 * correct.float().mean().item(), 4),
        "loss": round(F.cross_entropy(logits.float(), labels).item(), 6),
        "num_test_images": int(len(labels)),
        "per_class_accuracy": per_class,
    }
