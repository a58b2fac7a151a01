"""Figures a person looks at: training curves, confusion heatmap, image galleries."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files only, no display: also on a machine without a screen

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib import colormaps  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402


def curves_figure(history: pd.DataFrame, step_lrs: pd.DataFrame):
    """Loss and accuracy per epoch, train vs validation (and test, for display only: it decides
    nothing) on the same axes, plus the learning rate of every step (OneCycle's shape shows even
    in a two-epoch run)."""
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for ax, metric, label in ((axes[0], "loss", "loss"), (axes[1], "acc", "accuracy (%)")):
        ax.plot(history["epoch"], history[f"train_{metric}"], "o-", label="train")
        if history[f"val_{metric}"].notna().any():
            ax.plot(history["epoch"], history[f"val_{metric}"], "o-", label="validation")
        if history[f"test_{metric}"].notna().any():
            ax.plot(history["epoch"], history[f"test_{metric}"], "o--", alpha=0.6, label="test (display only)")
        ax.set(xlabel="epoch", ylabel=label, title=label)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend()
        ax.grid(alpha=0.3)
    axes[2].plot(step_lrs["epoch"], step_lrs["lr"], "-", color="tab:green")
    axes[2].set(xlabel="epoch", ylabel="learning rate", title="learning rate (every step)", xlim=(0, None))
    axes[2].xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[2].grid(alpha=0.3)
    fig.tight_layout()
    return fig


LABELLED_CLASSES = 30  # up to this many classes a confusion cell shows its count and each class its name


def literal(text: str) -> str:
    """A label shown as written: matplotlib reads text between two $ as math."""
    return text.replace("$", r"\$")


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


def gallery_figure(images: list[np.ndarray], captions: list[str], columns: int = 5, title: str = "",
                   colorbar: str = ""):
    """A grid of images with a readable caption over each, the title just above the first row, and
    optionally a jet colour bar (0-1) labelled `colorbar` at the right. Constrained layout makes
    room for every caption, so a long one never runs into the image above it."""
    rows = max(1, -(-len(images) // columns))
    caption_lines = max([caption.count("\n") + 1 for caption in captions] or [1])
    width = 2.4 * columns + (0.9 if colorbar else 0)
    height = (2.4 + 0.25 * caption_lines) * rows + (0.5 if title else 0)
    fig, axes = plt.subplots(rows, columns, figsize=(width, height), squeeze=False, layout="constrained")
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, caption in zip(axes.flat, images, captions):
        ax.imshow(image, interpolation="nearest")
        ax.set_title(literal(caption), fontsize=10)
    if title:
        fig.suptitle(title, fontsize=13)
    if colorbar:
        scale = plt.cm.ScalarMappable(cmap="jet", norm=plt.Normalize(0, 1))
        fig.colorbar(scale, ax=axes, fraction=0.02, shrink=0.8).set_label(colorbar)
    return fig


def overlay(image: np.ndarray, cam: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend a jet-coloured [0, 1] map over a uint8 RGB image; an all-zero map leaves it grey-ish
    untouched rather than painting it the colour of zero."""
    if cam.max() <= 0:
        return image / 255.0 * 0.5 + 0.25
    heat = colormaps["jet"](cam)[..., :3]
    return ((1 - alpha) * image / 255.0 + alpha * heat).clip(0, 1)


def _no_evidence(cam: np.ndarray) -> str:
    return "" if cam.max() > 0 else "\n(no positive evidence)"


def gradcam_figure(layer: str, images: list[np.ndarray], predicted: np.ndarray, actual: np.ndarray,
                   captions: list[str], chosen: pd.DataFrame):
    """Per image: the image, GradCAM for the predicted class, GradCAM for the actual class."""
    if not images:
        return gallery_figure([], [], columns=6, title="no misclassified test images to explain")
    panels, texts = [], []
    for img, cam_p, cam_a, text, row in zip(images, predicted, actual, captions, chosen.itertuples()):
        peak = max(cam_p.max(), cam_a.max()) or 1.0  # one scale per image: a weak map looks weak
        cam_p, cam_a = cam_p / peak, cam_a / peak
        panels += [img, overlay(img, cam_p), overlay(img, cam_a)]
        texts += [text, f"why {row.predicted}?{_no_evidence(cam_p)}", f"where is {row.actual}?{_no_evidence(cam_a)}"]
    return gallery_figure(panels, texts, columns=6,
                          title=f"GradCAM at {layer}: image | predicted class | actual class",
                          colorbar="GradCAM, 1 = the stronger of the image's two maps")


def faithfulness_figure(curves: dict, ranked: list[str]):
    """ROAD curves, one panel per layer (most faithful first): the predicted class's probability
    as pixels are removed most-relevant first, least-relevant first and at random."""
    fig, axes = plt.subplots(1, len(ranked), figsize=(4.2 * len(ranked), 3.6), squeeze=False, sharey=True)
    styles = {"morf": ("most relevant first", "tab:red"), "lerf": ("least relevant first", "tab:blue"),
              "random": ("random order", "tab:gray")}
    for ax, name in zip(axes.flat, ranked):
        for order, (label, colour) in styles.items():
            ax.plot(curves[name].fractions, curves[name].probability[order], "o-", color=colour, label=label)
        ax.set(title=f"{name}: gap {curves[name].gap:.2f}", xlabel="fraction of pixels removed", ylim=(0, 1))
        ax.grid(alpha=0.3)
    axes.flat[0].set_ylabel("probability of the predicted class")
    axes.flat[0].legend(fontsize=9)
    fig.tight_layout()
    return fig


def lr_finder_figure(sweep, chosen: float):
    """Smoothed loss against LR (log scale) with the chosen LR marked."""
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(sweep.lrs, sweep.losses)
    ax.set_xscale("log")
    ax.axvline(chosen, color="tab:red", linestyle="--", label=f"chosen max_lr {chosen:.3g}")
    ax.legend()
    ax.set(xlabel="learning rate", ylabel="smoothed training loss", title="LR range test")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
