"""Accuracy on a class-balanced sample of the test split under every corruption and severity.

A sample, not the whole split: 15 corruptions x 5 severities is 75 passes over the images, and
the grid must stay a small part of `dvc repro` on a laptop CPU. The sample's size sets how wide
the intervals are (metrics/robustness.json states both). Each cell draws its randomness from
(seed, corruption, severity) alone, so a cell is the same whatever else the grid holds."""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
from tqdm import tqdm

from cifarlab.intervals import interval_95, mean_interval_95
from cifarlab.robustness.corruptions import CORRUPTIONS, SEVERITIES, corrupt
from cifarlab.robustness.frost import FrostSource


def class_sample(labels: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """Indices of `per_class` test images of each class (all of a class that has fewer), drawn
    at random with `seed`, in ascending order; per_class 0: every test image."""
    if per_class == 0:
        return np.arange(len(labels))
    order = np.random.default_rng(seed).permutation(len(labels))
    chosen = [order[labels[order] == label][:per_class] for label in np.unique(labels)]
    return np.sort(np.concatenate(chosen))


def cell_rng(seed: int, name: str, severity: int) -> np.random.Generator:
    return np.random.default_rng([seed, list(CORRUPTIONS).index(name), severity])


def correctness_grid(images: np.ndarray, seed: int, correct: Callable[[np.ndarray], np.ndarray],
                     frost_photos: tuple[np.ndarray, ...] | None) -> dict[tuple[str, int], np.ndarray]:
    """Per cell (corruption, severity; ("clean", 0) first), which images `correct` gets right;
    frost from `frost_photos` (None: the drawn texture)."""
    cells = [("clean", 0)] + [(name, severity) for name in CORRUPTIONS for severity in SEVERITIES]
    grid = {}
    for name, severity in tqdm(cells, desc="corruptions", unit="cell", dynamic_ncols=True):
        grid[name, severity] = correct(images if name == "clean" else
                                       corrupt(images, name, severity, cell_rng(seed, name, severity), frost_photos))
    return grid


def grid_table(grid: dict[tuple[str, int], np.ndarray]) -> pd.DataFrame:
    """One row per corruption and severity: its accuracy (%), for plots/robustness.csv."""
    return pd.DataFrame([{"corruption": name, "severity": severity, "accuracy": round(100 * hits.mean(), 2)}
                         for (name, severity), hits in grid.items() if name != "clean"])


def summary(grid: dict[tuple[str, int], np.ndarray], frost: FrostSource) -> dict:
    """Clean and mean corrupted accuracy on the sample, each with a 95% interval, the drop between
    them, the worst corruption, every corruption's accuracy per severity, and whether frost (so
    the mean) is the benchmark's. The mean's interval
    treats images as the independent unit (a normal interval over each image's share of the 75
    cells it survives), since one image's 75 outcomes are not 75 independent trials."""
    clean = grid["clean", 0]
    corrupted = np.stack([hits for (name, _), hits in grid.items() if name != "clean"])
    per_image = corrupted.mean(axis=0)
    mean = 100 * per_image.mean()
    by_corruption = {name: {"mean": round(100 * np.mean([grid[name, s].mean() for s in SEVERITIES]), 2),
                            **{f"severity_{s}": round(100 * grid[name, s].mean(), 2) for s in SEVERITIES}}
                     for name in CORRUPTIONS}
    worst = min(by_corruption, key=lambda name: by_corruption[name]["mean"])
    return {"images": len(clean), "clean_accuracy": round(100 * clean.mean(), 2),
            "clean_accuracy_95": interval_95(int(clean.sum()), len(clean)),
            "mean_corruption_accuracy": round(mean, 2),
            "mean_corruption_accuracy_95": mean_interval_95(per_image),
            "mean_drop": round(100 * clean.mean() - mean, 2),
            "worst_corruption": worst, "worst_corruption_accuracy": by_corruption[worst]["mean"],
            "corruption_accuracy": by_corruption,
            "frost_is_benchmark": frost.is_benchmark, "frost": frost.kind}


def summary_line(metrics: dict, written_to, frost: FrostSource) -> str:
    return (f"under corruption: {metrics['mean_corruption_accuracy']:.2f}% mean over 15 corruptions x 5 severities "
            f"(clean {metrics['clean_accuracy']:.2f}% on the same {metrics['images']} images; worst "
            f"{metrics['worst_corruption']} {metrics['worst_corruption_accuracy']:.2f}%) -> {written_to}"
            + ("" if frost.is_benchmark else f"\nrobustness: frost is a {frost.provenance}; frost and the mean over "
               "corruptions are not comparable with published CIFAR-10-C results"))
