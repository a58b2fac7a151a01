"""Figures a person looks at: training curves, confusion heatmap, image galleries."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def curves_figure(history: pd.DataFrame):
    """Loss and accuracy per epoch, train vs test on the same axes, plus the learning rate."""
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for ax, metric, label in ((axes[0], "loss", "loss"), (axes[1], "acc", "accuracy (%)")):
        ax.plot(history["epoch"], history[f"train_{metric}"], "o-", label="train")
        ax.plot(history["epoch"], history[f"test_{metric}"], "o-", label="test")
        ax.set(xlabel="epoch", ylabel=label, title=label)
        ax.legend()
        ax.grid(alpha=0.3)
    axes[2].plot(history["epoch"], history["lr"], "o-", color="tab:green")
    axes[2].set(xlabel="epoch", ylabel="learning rate (epoch start)", title="learning rate")
    axes[2].grid(alpha=0.3)
    fig.tight_layout()
    return fig


def confusion_figure(matrix: np.ndarray, classes: list[str]):
    """Heatmap with counts written in every cell (rows: actual, columns: predicted)."""
    size = max(4.0, 0.6 * len(classes) + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    image = ax.imshow(matrix, cmap="Blues")
    fig.colorbar(image, ax=ax, fraction=0.046)
    ticks = np.arange(len(classes))
    ax.set_xticks(ticks, classes, rotation=45, ha="right")
    ax.set_yticks(ticks, classes)
    ax.set(xlabel="predicted", ylabel="actual", title="confusion matrix (test split)")
    threshold = matrix.max() / 2 if matrix.size else 0
    for (row, col), count in np.ndenumerate(matrix):
        ax.text(col, row, str(count), ha="center", va="center", fontsize=8,
                color="white" if count > threshold else "black")
    fig.tight_layout()
    return fig


def gallery_figure(images: list[np.ndarray], captions: list[str], columns: int = 5, title: str = ""):
    """A grid of uint8 RGB images with a caption under each."""
    rows = max(1, -(-len(images) // columns))
    fig, axes = plt.subplots(rows, columns, figsize=(2.4 * columns, 2.7 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, caption in zip(axes.flat, images, captions):
        ax.imshow(image, interpolation="nearest")
        ax.set_title(caption, fontsize=9)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def lr_finder_figure(lrs: list[float], losses: list[float], chosen: float | None, note: str = ""):
    """Smoothed loss against LR (log scale) with the chosen LR marked; or a note when not run."""
    fig, ax = plt.subplots(figsize=(7, 4) if lrs else (7, 0.8))
    if lrs:
        ax.plot(lrs, losses)
        ax.set_xscale("log")
        if chosen is not None:
            ax.axvline(chosen, color="tab:red", linestyle="--", label=f"chosen max_lr {chosen:.3g}")
            ax.legend()
        ax.set(xlabel="learning rate", ylabel="smoothed training loss", title="LR range test")
        ax.grid(alpha=0.3)
    else:
        ax.axis("off")
        ax.text(0.5, 0.5, note, ha="center", va="center", wrap=True)
    fig.tight_layout()
    return fig
