"""The training stage's figures: loss and accuracy curves with the LR of every step, and the LR
range test."""
from __future__ import annotations

import pandas as pd
from matplotlib.ticker import MaxNLocator

from cifarlab.figures import plt


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
