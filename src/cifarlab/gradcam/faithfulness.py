"""Is a saliency map faithful to the model? ROAD (Rong et al., "A Consistent and Efficient
Evaluation Strategy for Attribution Methods", ICML 2022): remove a fraction of the pixels and
watch the predicted class's probability. Removed pixels are filled by noisy linear imputation
(each one the weighted mean of its neighbours, solved jointly, plus a little noise), not by a
constant, so the result looks like an image rather than a scatter of grey dots that would hurt
any CNN. Removing the most relevant pixels first (MoRF) should hurt far more than removing the
least relevant first (LeRF); a random order is the baseline under the same imputation.

We write the imputation ourselves (one sparse solve per image with scipy, which albumentations
already brings) rather than add pytorch-grad-cam next to captum: it is ~30 lines and keeps one
CAM engine."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from scipy.sparse import coo_matrix
from scipy.sparse.linalg import spsolve
from torch import nn

ORDERS = ("morf", "lerf", "random")
# ROAD's neighbour weights: the 4 direct neighbours count twice as much as the 4 diagonal ones
_NEIGHBOURS = [(-1, 0, 1 / 6), (1, 0, 1 / 6), (0, -1, 1 / 6), (0, 1, 1 / 6),
               (-1, -1, 1 / 12), (-1, 1, 1 / 12), (1, -1, 1 / 12), (1, 1, 1 / 12)]


def balanced_indices(labels: np.ndarray, count: int) -> np.ndarray:
    """`count` test indices taken class by class in turn (each class's images in index order),
    so a test split stored class by class is not scored on its first class alone."""
    labels = np.asarray(labels)
    order = np.argsort(labels, kind="stable")
    rank = np.empty(len(labels), dtype=np.int64)
    starts = np.searchsorted(labels[order], labels[order])
    rank[order] = np.arange(len(labels)) - starts
    return np.lexsort((labels, rank))[:count]


def impute(image: np.ndarray, removed: np.ndarray, noise: float, rng: np.random.Generator) -> np.ndarray:
    """Fill the `removed` (H, W) pixels of a (C, H, W) image so that each equals the weighted mean
    of its neighbours inside the image, then add Gaussian noise of std `noise` to them."""
    height, width = removed.shape
    index = -np.ones(removed.shape, dtype=np.int64)
    rows, cols = np.nonzero(removed)
    index[rows, cols] = np.arange(len(rows))
    if not len(rows):
        return image.copy()
    entries_r, entries_c, entries_v = [np.arange(len(rows))], [np.arange(len(rows))], [np.ones(len(rows))]
    rhs = np.zeros((len(rows), image.shape[0]))
    neighbours = []  # per direction: its weight, whether it lies inside the image, and where (clipped)
    for dr, dc, weight in _NEIGHBOURS:
        r, c = rows + dr, cols + dc
        inside = (r >= 0) & (r < height) & (c >= 0) & (c < width)
        neighbours.append((weight * inside, inside, np.clip(r, 0, height - 1), np.clip(c, 0, width - 1)))
    total = sum(weights for weights, *_ in neighbours)  # weights of the neighbours that exist: a border has fewer
    for weights, inside, r, c in neighbours:
        share = weights / np.maximum(total, 1e-12)
        unknown = inside & removed[r, c]
        entries_r.append(np.flatnonzero(unknown))
        entries_c.append(index[r[unknown], c[unknown]])
        entries_v.append(-share[unknown])
        known = inside & ~removed[r, c]
        rhs[known] += share[known, None] * image[:, r[known], c[known]].T
    system = coo_matrix((np.concatenate(entries_v), (np.concatenate(entries_r), np.concatenate(entries_c))),
                        shape=(len(rows), len(rows))).tocsc()
    solved = spsolve(system, rhs).reshape(len(rows), -1)
    filled = image.copy()
    filled[:, rows, cols] = (solved + rng.normal(0.0, noise, solved.shape)).T
    return filled


def removal_masks(maps: np.ndarray, fraction: float, order: str, rng: np.random.Generator) -> np.ndarray:
    """(N, H, W) masks of the `fraction` pixels to remove per map: the highest-scored (morf), the
    lowest-scored (lerf) or random ones. Ties are broken at random, so a flat map removes randomly."""
    flat = maps.reshape(len(maps), -1)
    count = int(round(fraction * flat.shape[1]))
    masks = np.zeros_like(flat, dtype=bool)
    for i, row in enumerate(flat):
        jitter = rng.random(len(row))
        if order == "random":
            ranking = np.argsort(jitter)
        else:
            ranking = np.lexsort((jitter, -row if order == "morf" else row))
        masks[i, ranking[:count]] = True
    return masks.reshape(maps.shape)


@dataclass
class RoadCurves:
    fractions: list[float]
    probability: dict[str, list[float]]  # per order: the mean probability of the predicted class

    @property
    def gap(self) -> float:
        """Mean LeRF - MoRF probability over the fractions: large when the map points at what the
        model uses, about zero when it does not."""
        return float(np.mean(np.subtract(self.probability["lerf"], self.probability["morf"])))


def curves_table(curves: dict[str, RoadCurves]) -> pd.DataFrame:
    """One row per (layer, order, fraction) with the mean probability: eval/faithfulness.csv."""
    return pd.DataFrame([{"layer": layer, "order": order, "fraction": fraction, "probability": round(value, 6)}
                         for layer, road in curves.items() for order, values in road.probability.items()
                         for fraction, value in zip(road.fractions, values)])


@torch.no_grad()
def road_curves(model: nn.Module, inputs: torch.Tensor, maps: np.ndarray, fractions: list[float],
                noise: float = 0.04, seed: int = 0) -> RoadCurves:
    """The predicted class's mean probability after removing each fraction of pixels in each
    order, with noisy linear imputation (maps: (N, H, W) relevance of each input pixel)."""
    model.eval()
    predicted = model(inputs).argmax(1)
    images = inputs.detach().cpu().double().numpy()
    probability = {order: [] for order in ORDERS}
    for order in ORDERS:
        for fraction in fractions:
            rng = np.random.default_rng([seed, int(fraction * 1000), ORDERS.index(order)])
            masks = removal_masks(maps, fraction, order, rng)
            filled = np.stack([impute(image, mask, noise, rng) for image, mask in zip(images, masks)])
            probs = F.softmax(model(torch.from_numpy(filled).to(inputs.dtype)), dim=1)
            probability[order].append(probs.gather(1, predicted[:, None]).mean().item())
    return RoadCurves(list(fractions), probability)
