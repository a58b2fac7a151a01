"""The evaluate stage's figure: the confusion matrix as a heatmap."""
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
