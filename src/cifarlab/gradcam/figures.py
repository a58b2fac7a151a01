"""The gradcam stage's figures: each mistake with its maps for the predicted and the actual class,
and the ROAD faithfulness curves per layer."""
from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib import colormaps

from cifarlab.figures import plt
from cifarlab.gallery import gallery_figure


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
