"""The robustness stage's figures: accuracy per corruption and severity as a heat map, and what
each corruption does to one test image."""
from __future__ import annotations

import numpy as np
import pandas as pd

from cifarlab.figures import plt
from cifarlab.robustness.corruptions import CORRUPTIONS, FAMILIES, SEVERITIES, corrupt
from cifarlab.robustness.frost import FrostSource
from cifarlab.robustness.grid import cell_rng

EXAMPLE_SEVERITY = 3  # the middle of the five


def heatmap_figure(table: pd.DataFrame, metrics: dict):
    """Rows: the corruptions by family; columns: severity 1-5; each cell its accuracy (%)."""
    grid = table.pivot(index="corruption", columns="severity", values="accuracy").loc[list(CORRUPTIONS)]
    fig, ax = plt.subplots(figsize=(6, 7))
    image = ax.imshow(grid.to_numpy(), cmap="RdYlGn", vmin=0, vmax=100, aspect="auto")
    fig.colorbar(image, ax=ax, fraction=0.05, label="accuracy (%)")
    for (row, col), value in np.ndenumerate(grid.to_numpy()):
        ax.text(col, row, f"{value:.0f}", ha="center", va="center", fontsize=8)
    family_of = {f.__name__: family for family, members in FAMILIES.items() for f in members}
    ax.set_xticks(range(len(SEVERITIES)), [str(s) for s in SEVERITIES])
    ax.set_yticks(range(len(grid)), [f"{name.replace('_', ' ')} ({family_of[name]})" for name in grid.index])
    ax.set(xlabel="severity", title=f"accuracy under corruption ({metrics['images']} test images)\n"
                                    f"clean {metrics['clean_accuracy']:.1f}%, mean corrupted "
                                    f"{metrics['mean_corruption_accuracy']:.1f}%")
    fig.tight_layout()
    return fig


def examples_figure(image: np.ndarray, seed: int, frost: FrostSource):
    """One test image clean and under each corruption at EXAMPLE_SEVERITY."""
    severity = EXAMPLE_SEVERITY
    def title(name: str) -> str:
        return name.replace("_", " ") + (" (drawn)" if name == "frost" and not frost.is_benchmark else "")

    panels = [("clean", image)] + [(title(name), corrupt(image[None], name, severity, cell_rng(seed, name, severity),
                                                         frost.photos)[0]) for name in CORRUPTIONS]
    fig, axes = plt.subplots(2, 8, figsize=(12, 3.4))
    for ax, (title, picture) in zip(axes.flat, panels):
        ax.imshow(picture, interpolation="nearest")
        ax.set_title(title, fontsize=8)
        ax.axis("off")
    fig.suptitle(f"each corruption at severity {EXAMPLE_SEVERITY} of 5")
    fig.tight_layout()
    return fig
