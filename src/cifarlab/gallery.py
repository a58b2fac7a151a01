"""A grid of captioned images: the misclassify stage's gallery and the gradcam stage's panels."""
from __future__ import annotations

import numpy as np

from cifarlab.figures import literal, plt


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
