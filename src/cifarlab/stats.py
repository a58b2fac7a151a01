"""Per-channel mean and std of the training images, on the [0, 1] scale, so normalisation and
mean-filled augmentations use the data's own numbers instead of typed-in CIFAR constants."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cifarlab.core.io import read_checked, read_json, write_json

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class Stats:
    mean: list[float]
    std: list[float]

    @property
    def fill(self) -> tuple[int, ...]:
        """The mean as a uint8 pixel: the neutral value after normalisation, used for padding
        and cut-out holes on both batch paths."""
        return tuple(int(round(m * 255)) for m in self.mean)


def channel_stats(images: np.ndarray, chunk: int = 4096) -> Stats:
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
    return Stats(mean.tolist(), std.tolist())


def save_stats(path: Path, stats: Stats, num_images: int) -> None:
    write_json(path, {"mean": stats.mean, "std": stats.std, "num_train_images": num_images})


def load_stats(path: Path) -> Stats:
    def read(path: Path) -> Stats:
        saved = read_json(path)
        mean, std = [float(v) for v in saved["mean"]], [float(v) for v in saved["std"]]
        if len(mean) != 3 or len(std) != 3:
            raise ValueError("not three channels")
        return Stats(mean, std)
    return read_checked(path, read)


def normalised(images, stats: Stats) -> torch.Tensor:
    """uint8 HWC images (a list or an array) as one model input batch (N, C, H, W), normalised
    as both batch paths do it: (x / 255 - mean) / std per channel."""
    import torch  # here: the stats stage itself never needs it

    batch = torch.as_tensor(np.stack(list(images))).permute(0, 3, 1, 2).float()
    mean = torch.tensor(stats.mean).view(1, -1, 1, 1) * 255
    std = torch.tensor(stats.std).view(1, -1, 1, 1) * 255
    return (batch - mean) / std
