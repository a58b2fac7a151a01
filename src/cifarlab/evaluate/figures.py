"""The evaluate stage's figures: the confusion matrix as a heatmap, and the reliability diagram."""
from __future__ import annotations

import numpy as np

from cifarlab.figures import literal, plt

LABELLED_CLASSES = 30  # up to this many classes a confusion cell shows its count and each class its name


def confusion_figure(matrix: np.ndarray, classes: list[str]):
    """Heatmap (rows: actual, columns: predicted) with the count in every cell; beyond
    LABELLED_CLASSES classes the counts and names could not be read, so the figure keeps its
    size, shows the colours alone and says where the numbers are."""
    labelled = len(classes) <= LABELLED_CLASSES
    size = max(4.0, 0.6 * min(len(classes), LABELLED_CLASSES) + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    image = ax.imshow(matrix, cmap="Blues", interpolation="nearest")
    fig.colorbar(image, ax=ax, fraction=0.046)
    title = "confusion matrix (test split)"
    if labelled:
        ticks = np.arange(len(classes))
        ax.set_xticks(ticks, [literal(name) for name in classes], rotation=45, ha="right")
        ax.set_yticks(ticks, [literal(name) for name in classes])
        threshold = matrix.max() / 2 if matrix.size else 0
        for (row, col), count in np.ndenumerate(matrix):
            ax.text(col, row, str(count), ha="center", va="center", fontsize=8,
                    color="white" if count > threshold else "black")
    else:
        title += f"\n{len(classes)} classes, in eval/classes.json order; counts in plots/confusion.csv"
    ax.set(xlabel="predicted", ylabel="actual", title=title)
    fig.tight_layout()
    return fig


KIND_LABELS = {"without_tta": "plain (what predict shows)", "tta": "with TTA", "calibrated": "plain, calibrated"}


def reliability_figure(diagram: dict[str, list[dict]], metrics: dict):
    """Accuracy against confidence per confidence bin, one line per kind of prediction, with the
    diagonal a calibrated model follows: below it over-confident, above it under-confident."""
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.plot([0, 100], [0, 100], "--", color="grey", label="calibrated: accuracy = confidence")
    for kind, points in diagram.items():
        error = metrics["calibration_error" + ("" if kind == "tta" else f"_{kind}")]
        ax.plot([p["confidence"] for p in points], [p["accuracy"] for p in points], "o-",
                label=f"{KIND_LABELS[kind]}: ECE {error:.1f} points")
    ax.set(xlabel="confidence (%)", ylabel="accuracy (%)", xlim=(0, 100), ylim=(0, 100),
           title=f"reliability (test split; temperature {metrics['temperature']:g})")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    return fig
