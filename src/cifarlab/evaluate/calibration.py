"""Whether the model's probabilities mean what they say, and a temperature that makes them.

A model is calibrated when, among the images it gives confidence p, a fraction p is right. The
expected calibration error (ECE: Guo et al., "On Calibration of Modern Neural Networks", 2017)
sorts predictions into 15 equal-width confidence bins and averages |accuracy - confidence| over
them, weighted by their images; torchmetrics computes it. Label smoothing and TTA averaging make
a model under-confident. Temperature scaling (the same paper) divides the logits by one number T
fitted by likelihood: no prediction changes, only how sure each one is."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from scipy.optimize import minimize_scalar
from torchmetrics.functional.classification import multiclass_calibration_error

from cifarlab.core import paths
from cifarlab.core.io import save_figure, write_csv, write_json
from cifarlab.evaluate.figures import reliability_figure

BINS = 15  # Guo et al.'s choice
TEMPERATURES = (0.05, 20.0)  # the range searched: far beyond what a trained classifier needs either way


def calibration_error(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """ECE of softmax(logits) against labels, in percentage points."""
    probs = F.softmax(logits.float(), dim=1)
    if probs.shape[1] == 1:  # one class: always predicted with probability 1, and always right
        return 0.0
    return 100 * multiclass_calibration_error(probs, labels, probs.shape[1], n_bins=BINS, norm="l1").item()


def confidence_bins(confidence: torch.Tensor) -> torch.Tensor:
    """Each confidence's bin, as torchmetrics' ECE bins it: [k/15, (k+1)/15) for k = 0..14, and
    exactly 1.0 in a bin of its own (index 15), so the diagram's points are the metric's bins."""
    edges = torch.linspace(0, 1, BINS + 1, dtype=confidence.dtype, device=confidence.device)
    return torch.bucketize(confidence, edges, right=True) - 1


def reliability(logits: torch.Tensor, labels: torch.Tensor) -> list[dict]:
    """The reliability diagram's points: per non-empty confidence bin, the mean confidence, the
    accuracy (both in %) and the images. Weighted by images, |accuracy - confidence| averages to
    calibration_error."""
    confidence, predicted = F.softmax(logits.float(), dim=1).max(dim=1)
    return reliability_points(confidence, (predicted == labels).float())


def reliability_points(confidence: torch.Tensor, correct: torch.Tensor) -> list[dict]:
    bins = confidence_bins(confidence)
    points = []
    for k in range(BINS + 1):
        inside = bins == k
        if inside.any():
            points.append({"bin": k + 1, "confidence": round(100 * confidence[inside].mean().item(), 3),
                           "accuracy": round(100 * correct[inside].mean().item(), 3),
                           "images": int(inside.sum())})
    return points


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The T that minimises the cross-entropy of softmax(logits / T) on these labels."""
    logits = logits.float()

    def loss(log_t: float) -> float:
        return F.cross_entropy(logits / math.exp(log_t), labels).item()

    found = minimize_scalar(loss, bounds=tuple(math.log(t) for t in TEMPERATURES), method="bounded",
                            options={"xatol": 1e-4})
    return round(math.exp(found.x), 4)


def cross_fitted(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Logits scaled as an unseen image would be: the images are split in two (alternate
    indices), and each half is scaled by the temperature fitted on the other, so the calibration
    error measured on them is not measured on what the temperature was fitted to."""
    halves = [np.arange(len(labels))[start::2] for start in (0, 1)]
    scaled = logits.float().clone()
    for this, other in (halves, halves[::-1]):
        scaled[this] = logits[this].float() / fit_temperature(logits[other], labels[other])
    return scaled


def assess(plain: torch.Tensor, tta: torch.Tensor, labels: torch.Tensor,
           held_out: tuple[torch.Tensor, torch.Tensor] | None) -> tuple[dict, dict[str, list[dict]], dict]:
    """Calibration of the test predictions without and with TTA, and of the plain ones (what
    predict shows) after temperature scaling. T is fitted on the validation split's plain logits
    (`held_out`) when there is one; otherwise on the test split, where it changes no prediction,
    and the calibrated error is cross-fitted. Returns the metrics, the reliability diagram's points
    per kind of prediction, and the temperature's facts."""
    if held_out is not None:
        temperature = fit_temperature(*held_out)
        calibrated = plain.float() / temperature
        fitted_on = f"the validation split's {len(held_out[1]):,} images, plain predictions"
    else:
        temperature = fit_temperature(plain, labels)
        calibrated = cross_fitted(plain, labels)
        fitted_on = (f"the test split's {len(labels):,} images, plain predictions (no validation split; a "
                     "temperature changes no prediction, and the calibrated error is cross-fitted over two halves)")
    kinds = {"without_tta": plain, "tta": tta, "calibrated": calibrated}
    metrics = {"calibration_error" + ("" if kind == "tta" else f"_{kind}"): round(calibration_error(logits, labels), 3)
               for kind, logits in kinds.items()}
    confidence = F.softmax(plain.float(), dim=1).max(dim=1).values.mean().item()
    metrics.update({"mean_confidence_without_tta": round(100 * confidence, 3), "temperature": temperature,
                    "temperature_fitted_on": "validation" if held_out is not None else "test, cross-fitted"})
    return metrics, {kind: reliability(logits, labels) for kind, logits in kinds.items()}, \
        {"temperature": temperature, "fitted_on": fitted_on}


def write(diagram: dict[str, list[dict]], metrics: dict, temperature: dict) -> None:
    """The reliability diagram (a CSV per kind of prediction, for `dvc plots`, and the figure) and
    models/calibration.json, which predict reads beside the checkpoint whose digest it names."""
    for kind, points in diagram.items():
        write_csv(paths.RELIABILITY / f"{kind}.csv", pd.DataFrame(points))
    save_figure(paths.RELIABILITY_PNG, reliability_figure(diagram, metrics))
    write_json(paths.CALIBRATION, temperature)
