"""Per-channel mean and std of the training images, on the [0, 1] scale, so normalisation and
mean-filled augmentations use the data's own numbers instead of typed-in CIFAR constants."""
from __future__ import annotations

import numpy as np


def channel_stats(images: np.ndarray, chunk: int = 4096) -> tuple[list[float], list[float]]:
    """Mean and population std per channel of uint8 NHWC images (float64, chunked for memory)."""
    total = np.zeros(images.shape[-1])
    total_sq = np.zeros(images.shape[-1])
    for start in range(0, len(images), chunk):
        block = images[start:start + chunk].reshape(-1, images.shape[-1]).astype(np.float64) / 255.0
        total += block.sum(axis=0)
        total_sq += np.square(block).sum(axis=0)
    count = images.size // images.shape[-1]
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - np.square(mean), 0.0))
    return mean.tolist(), std.tolist()
