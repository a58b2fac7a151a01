"""The device data path: the prepared uint8 dataset is moved to the training device once, and
each batch is cropped, flipped, cut out and normalised there with torch ops. It matches the
albumentations pipeline's crop, flip and cutout (mean padding and fill, the same offset and
hole ranges) and removes per-sample CPU work, which on a GPU sets the pace otherwise."""
from __future__ import annotations

import numpy as np
import torch

from cifarlab.errors import UserError

SUPPORTED = ("crop", "hflip", "cutout")


def check_supported(augment: dict) -> None:
    """The device path implements crop, hflip and cutout; any other active augmentation is an error."""
    active = [name for name, cfg in augment.items() if name not in SUPPORTED and cfg["p"] > 0]
    if active:
        raise UserError(f"params.yaml: train.loader = device supports {', '.join(SUPPORTED)}; set "
                        + ", ".join(f"augment.{name}.p = 0" for name in active)
                        + " or use train.loader: albumentations")


def augment_batch(images: torch.Tensor, augment: dict, fill: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random crop with mean padding, horizontal flip and one mean-filled square hole, per image,
    on a float (N, C, H, W) batch in 0-255; each with its own probability from params."""
    n, _, height, width = images.shape
    device = images.device

    def chance(p: float) -> torch.Tensor:
        return torch.rand(n, device=device, generator=generator) < p

    def randint(high: int) -> torch.Tensor:
        return torch.randint(0, high + 1, (n,), device=device, generator=generator)

    pad = augment["crop"]["padding"]
    if pad and augment["crop"]["p"] > 0:
        canvas = fill.view(1, -1, 1, 1).expand(n, -1, height + 2 * pad, width + 2 * pad).clone()
        canvas[:, :, pad:pad + height, pad:pad + width] = images
        cropping = chance(augment["crop"]["p"])
        top = torch.where(cropping, randint(2 * pad), pad)
        left = torch.where(cropping, randint(2 * pad), pad)
        rows = (top[:, None] + torch.arange(height, device=device))[:, None, :, None]
        cols = (left[:, None] + torch.arange(width, device=device))[:, None, None, :]
        batch = torch.arange(n, device=device)[:, None, None, None]
        channel = torch.arange(images.shape[1], device=device)[None, :, None, None]
        images = canvas[batch, channel, rows, cols]
    flipping = chance(augment["hflip"]["p"]).view(n, 1, 1, 1)
    images = torch.where(flipping, images.flip(-1), images)
    size = augment["cutout"]["size"]
    if augment["cutout"]["p"] > 0:
        top, left = randint(height - size), randint(width - size)
        ys = torch.arange(height, device=device)[None, :, None]
        xs = torch.arange(width, device=device)[None, None, :]
        hole = ((ys >= top[:, None, None]) & (ys < top[:, None, None] + size)
                & (xs >= left[:, None, None]) & (xs < left[:, None, None] + size))
        hole &= chance(augment["cutout"]["p"])[:, None, None]
        images = torch.where(hole[:, None], fill.view(1, -1, 1, 1), images)
    return images


class DeviceBatches:
    """An iterable of (images, labels) batches like a DataLoader, generated on `device`."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, augment: dict | None, mean: list[float],
                 std: list[float], batch_size: int, device: torch.device, shuffle: bool = False) -> None:
        self.images = torch.from_numpy(images).to(device).permute(0, 3, 1, 2).contiguous()
        self.labels = torch.from_numpy(labels).to(device)
        self.augment, self.batch_size, self.shuffle, self.device = augment, batch_size, shuffle, device
        self.fill = torch.tensor([round(m * 255) for m in mean], dtype=torch.float32, device=device)
        self.mean = torch.tensor(mean, device=device).view(1, -1, 1, 1) * 255
        self.std = torch.tensor(std, device=device).view(1, -1, 1, 1) * 255
        self.generator = torch.Generator(device=device).manual_seed(0)

    def reseed(self, value: int) -> None:
        self.generator.manual_seed(value)

    def __len__(self) -> int:
        return -(-len(self.labels) // self.batch_size)

    def __iter__(self):
        count = len(self.labels)
        order = (torch.randperm(count, device=self.device, generator=self.generator) if self.shuffle
                 else torch.arange(count, device=self.device))
        for start in range(0, count, self.batch_size):
            index = order[start:start + self.batch_size]
            batch = self.images[index].float()
            if self.augment is not None:
                batch = augment_batch(batch, self.augment, self.fill, self.generator)
            yield (batch - self.mean) / self.std, self.labels[index]
