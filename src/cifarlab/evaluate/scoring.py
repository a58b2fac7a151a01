"""Scoring a model's predictions on labelled images: accuracy, loss, per-class precision and
recall, the most-confused class pairs, and test-time augmentation. One path for the evaluate
stage (the test split) and `cifarlab score` (a user's own images): score()."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from cifarlab.evaluate.suspects import suspect_labels
from cifarlab.feed.batches import Batches, eval_batches
from cifarlab.feed.inference import accuracy, predict
from cifarlab.intervals import interval_95
from cifarlab.predictions_csv import chance_words


def tta_logits(model: nn.Module, batches: Batches, device: torch.device, plain: torch.Tensor, mode: str,
               precision: str = "fp32") -> torch.Tensor:
    """Test-time augmentation (evaluate.tta) from the plain logits: 'flip' averages each image
    with its mirror; 'flip_translate' gives that average half the weight and the flip averages of
    the image shifted one pixel up-left and one down-right (reflect-padded) a quarter each, as
    airbench's (K. Jordan, arXiv:2404.00498) level-2 TTA; 'none' keeps the plain logits."""
    if mode == "none":
        return plain

    def mirrored_average(shift: int | None, plain: torch.Tensor | None = None) -> torch.Tensor:
        view = _Transformed(batches, lambda images: images if shift is None else _shifted(images, shift))
        if plain is None:
            plain, _ = predict(model, view, device, precision)
        mirror, _ = predict(model, _Transformed(view, lambda images: torch.flip(images, dims=[-1])), device,
                            precision)
        return (plain + mirror) / 2

    logits = mirrored_average(None, plain)
    if mode == "flip":
        return logits
    return logits / 2 + (mirrored_average(-1) + mirrored_average(1)) / 4


def validation_logits(model: nn.Module, data, stats, batch_size: int, device: torch.device,
                      precision: str) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Plain logits and labels of the validation split (None without one): what calibration fits to."""
    if not len(data.y_val):
        return None
    return predict(model, eval_batches(data.x_val, data.y_val, stats, batch_size, device, "device"), device, precision)


def _shifted(images: torch.Tensor, shift: int) -> torch.Tensor:
    """Images moved `shift` pixels down and right (negative: up and left), the edge reflected in."""
    padded = F.pad(images, (1, 1, 1, 1), mode="reflect")
    height, width = images.shape[-2:]
    start = 1 - shift
    return padded[..., start:start + height, start:start + width]


class _Transformed:
    """Iterates batches with `transform` applied to every batch of images."""

    def __init__(self, batches: Batches, transform) -> None:
        self.batches, self.transform = batches, transform

    def __iter__(self):
        for images, labels in self.batches:
            yield self.transform(images), labels


def predictions_table(logits: torch.Tensor, labels: torch.Tensor, classes: list[str]) -> pd.DataFrame:
    """One row per test image: index, actual/predicted (names and ids), confidence, and whether
    the label is suspect (evaluate/suspects.py)."""
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
        "label_suspect": suspect_labels(logits, labels).astype(int),  # 0 or 1: the tables hold numbers
    })


def confusion_matrix(actual: np.ndarray, predicted: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts with rows = actual class, columns = predicted class."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (actual, predicted), 1)
    return matrix


def per_class_rates(matrix: np.ndarray) -> tuple[list, list]:
    """Per class, in %: recall (= the class's accuracy) and precision; None where undefined."""
    hits = np.diag(matrix)

    def percent(denominators):
        return [round(100.0 * float(n) / d, 2) if d else None for n, d in zip(hits, denominators)]
    return percent(matrix.sum(axis=1)), percent(matrix.sum(axis=0))


def most_confused(matrix: np.ndarray, classes: list[str], top: int = 5) -> list[dict]:
    """The largest off-diagonal cells: which true class is most often taken for which."""
    off = matrix.copy()
    np.fill_diagonal(off, 0)
    order = np.argsort(-off, axis=None, kind="stable")[:top]
    pairs = [np.unravel_index(i, off.shape) for i in order]
    return [{"actual": classes[a], "predicted": classes[p], "count": int(off[a, p])}
            for a, p in pairs if off[a, p] > 0]


def accuracy_interval(logits: torch.Tensor, labels: torch.Tensor) -> dict:
    return interval_95(int((logits.argmax(dim=1) == labels).sum()), len(labels))


def summary_metrics(logits: torch.Tensor, labels: torch.Tensor) -> dict:
    """The few numbers runs are compared by (dvc exp show): test accuracy (%) with its 95%
    interval (whether two runs differ beyond the test split's sampling noise), mean cross-entropy
    and how many images they were measured on."""
    return {
        "accuracy": round(accuracy(logits, labels), 4),
        "accuracy_95": accuracy_interval(logits, labels),
        "loss": round(F.cross_entropy(logits.float(), labels).item(), 6),
        "num_test_images": int(len(labels)),
    }


def test_metrics(tta: torch.Tensor, plain: torch.Tensor, labels: torch.Tensor, mode: str) -> dict:
    """metrics/evaluate.json's accuracy part: with TTA (`mode`; the result) and without."""
    return {**summary_metrics(tta, labels), "tta": mode, "accuracy_without_tta": round(accuracy(plain, labels), 4),
            "accuracy_without_tta_95": accuracy_interval(plain, labels)}


def scored_line(metrics: dict, num_classes: int, written_to) -> str:
    """The evaluate stage's last words: the result, and a warning when it is chance level."""
    tta = f" ({metrics['tta']} TTA; {metrics['accuracy_without_tta']:.2f}% without)" if metrics["tta"] != "none" else ""
    warning = chance_words(metrics["accuracy"], num_classes)
    return (f"scored {metrics['num_test_images']} images of the test split: accuracy {metrics['accuracy']:.2f}%{tta} "
            f"-> {written_to}" + (f"\nwarning: {warning}" if warning else ""))


def class_details(matrix: np.ndarray, classes: list[str]) -> dict:
    """Per-class accuracy and precision and the most-confused pairs: for the report, kept out of
    the metrics so `dvc exp show` stays a table a terminal can hold."""
    recall, precision = per_class_rates(matrix)
    intervals = [interval_95(int(matrix[k, k]), int(matrix[k].sum())) for k in range(len(classes))]
    return {"per_class_accuracy": dict(zip(classes, recall)), "per_class_accuracy_95": dict(zip(classes, intervals)),
            "per_class_precision": dict(zip(classes, precision)),
            "most_confused": most_confused(matrix, classes)}


@dataclass
class Scored:
    plain: torch.Tensor  # logits without TTA
    logits: torch.Tensor  # with TTA (the result)
    labels: torch.Tensor
    table: pd.DataFrame  # per image (predictions_table)
    matrix: np.ndarray  # confusion: rows actual, columns predicted
    metrics: dict  # test_metrics
    details: dict  # class_details


def score(model: nn.Module, batches: Batches, device: torch.device, precision: str, mode: str,
          classes: list[str]) -> Scored:
    """`batches` (labelled, in order) scored with TTA `mode`: the evaluate stage's numbers and
    tables, and the same for `cifarlab score`, so both say alike of alike images."""
    plain, labels = predict(model, batches, device, precision)
    logits = tta_logits(model, batches, device, plain, mode, precision)
    table = predictions_table(logits, labels, classes)
    matrix = confusion_matrix(labels.numpy(), table["predicted_id"].to_numpy(), len(classes))
    return Scored(plain, logits, labels, table, matrix, test_metrics(logits, plain, labels, mode),
                  class_details(matrix, classes))
