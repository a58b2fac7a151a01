"""95% intervals of accuracies, so a reader sees whether two numbers differ beyond sampling noise."""
from __future__ import annotations

import math

import numpy as np

Z95 = 1.959964  # the standard normal quantile of a two-sided 95% interval


def wilson_interval(correct: int, total: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a proportion (E. B. Wilson, 1927), in percent: unlike the normal
    approximation it stays inside 0..100 and is sound for small samples and accuracies near 100%."""
    if total == 0:
        return 0.0, 100.0
    p, zz = correct / total, z * z
    centre = (p + zz / (2 * total)) / (1 + zz / total)
    half = z / (1 + zz / total) * math.sqrt(p * (1 - p) / total + zz / (4 * total * total))
    return 100 * max(centre - half, 0.0), 100 * min(centre + half, 1.0)


def interval_95(correct: int, total: int) -> dict:
    """The accuracy's 95% Wilson interval, in percent, as metrics files hold it."""
    low, high = wilson_interval(correct, total)
    return {"low": round(low, 2), "high": round(high, 2)}


def mean_interval_95(values: np.ndarray) -> dict:
    """The normal 95% interval, in percent, of the mean of per-item scores in [0, 1] (clipped to
    0..100): for a mean over items whose own outcomes are not independent trials."""
    mean = 100 * float(np.mean(values))
    half = 100 * Z95 * float(np.std(values, ddof=1)) / math.sqrt(len(values)) if len(values) > 1 else 100.0
    return {"low": round(max(mean - half, 0.0), 2), "high": round(min(mean + half, 100.0), 2)}
