"""Batches for training and scoring, on either path train.loader chooses, behind one interface:
iterate (images, labels) batches, len() batches per pass, and set_epoch(epoch) (as
DistributedSampler does) so each epoch's shuffle and augmentation depend only on (seed, epoch)
and an interrupted run resumes to the same result.

Under data-parallel training every process draws the same shuffle and takes its own contiguous
part of each global batch (`rank` of `world`), so the N processes together see exactly the
batches one process would; only the augmentation's random draws are per process.

- albumentations: per-image augmentation on the CPU in a DataLoader (the course notebooks' way);
- device: the uint8 dataset lives on the training device and whole batches are augmented and
  normalised there with torch ops, matching every step of the albumentations pipeline in
  distribution (mean padding and fill, the same offset, angle, scale and hole ranges, the same
  rates). It removes the per-sample CPU work that otherwise sets the pace on a GPU."""
from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Protocol

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, get_worker_info

from cifarlab.data.augment import eval_transform, train_transform
from cifarlab.data.stats import Stats

if TYPE_CHECKING:
    from cifarlab.config import AugmentConfig


class Batches(Protocol):
    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]: ...
    def __len__(self) -> int: ...
    def set_epoch(self, epoch: int) -> None: ...


def epoch_seed(seed: int, epoch: int) -> int:
    return seed * 1000 + epoch


def augment_seed(seed: int, epoch: int, rank: int) -> int:
    """The augmentation's seed for one process in one epoch (the shuffle's is epoch_seed alone)."""
    return epoch_seed(seed, epoch) * 1009 + rank


def steps_per_pass(count: int, batch_size: int, world: int, training: bool) -> int:
    """Batches per pass. In training, a last, partial batch too small to give each process two
    images is dropped (BatchNorm cannot train on one)."""
    full, rest = divmod(count, batch_size)
    if not training:
        return full + (rest > 0)
    return full + (rest >= 2 * world or (rest > 0 and full == 0))


def shard(index, rank: int, world: int):
    """Process `rank`'s contiguous part of one global batch; sizes differ by at most one."""
    size, extra = divmod(len(index), world)
    start = rank * size + min(rank, extra)
    return index[start:start + size + (rank < extra)]


def batch_order(count: int, batch_size: int, generator: torch.Generator | None, rank: int = 0,
                world: int = 1) -> Iterator[torch.Tensor]:
    """This process's image indices, batch by batch: shuffled by `generator` (identically on
    every process), or in order without one."""
    order = torch.randperm(count, generator=generator) if generator is not None else torch.arange(count)
    for step in range(steps_per_pass(count, batch_size, world, training=generator is not None)):
        yield shard(order[step * batch_size:(step + 1) * batch_size], rank, world)


class _BatchSampler(Sampler):
    def __init__(self, count: int, batch_size: int, generator: torch.Generator | None, rank: int, world: int) -> None:
        self.count, self.batch_size, self.generator, self.rank, self.world = count, batch_size, generator, rank, world

    def __len__(self) -> int:
        return steps_per_pass(self.count, self.batch_size, self.world, training=self.generator is not None)

    def __iter__(self):
        for index in batch_order(self.count, self.batch_size, self.generator, self.rank, self.world):
            yield index.tolist()


def resolve_workers(workers: int | str) -> int:
    """train.workers made concrete: 'auto' leaves two cores to the model and the main process
    (2 cores: 0 workers, 8: 3, 16: 7); a number is taken as it is."""
    if workers != "auto":
        return int(workers)
    return max(0, (os.cpu_count() or 1) // 2 - 1)


def _seed_worker(worker_id: int) -> None:
    """Each DataLoader worker augments with its own seed from (seed, epoch, worker), so a run with
    workers is as repeatable as one without."""
    dataset = get_worker_info().dataset
    dataset.transform.set_random_seed(dataset.epoch_seed * 1000 + worker_id)


class _ArrayDataset(Dataset):
    def __init__(self, images: np.ndarray, labels: np.ndarray, transform) -> None:
        self.images, self.labels, self.transform = images, labels, transform
        self.epoch_seed = 0

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.transform(image=self.images[index])["image"], int(self.labels[index])


class ArrayBatches:
    """Per-image albumentations batches from a DataLoader (`workers` processes, or this one)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform, batch_size: int, shuffle: bool = False,
                 seed: int = 0, pin_memory: bool = False, workers: int = 0, rank: int = 0, world: int = 1) -> None:
        self.seed, self.transform, self.rank = seed, transform, rank
        self.dataset = _ArrayDataset(images, labels, transform)
        self.generator = torch.Generator().manual_seed(seed) if shuffle else None
        sampler = _BatchSampler(len(labels), batch_size, self.generator, rank, world)
        self.loader = DataLoader(self.dataset, batch_sampler=sampler, pin_memory=pin_memory, num_workers=workers,
                                 worker_init_fn=_seed_worker if workers else None)

    def set_epoch(self, epoch: int) -> None:
        if self.generator is not None:
            self.generator.manual_seed(epoch_seed(self.seed, epoch))
        value = augment_seed(self.seed, epoch, self.rank)
        self.transform.set_random_seed(value)
        self.dataset.epoch_seed = value

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        return iter(self.loader)


class _Draws:
    """Per-image random draws for a batch of `n`, all from one generator on the batch's device."""

    def __init__(self, n: int, device: torch.device, generator: torch.Generator) -> None:
        self.n, self.device, self.generator = n, device, generator

    def uniform(self, low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(self.n, device=self.device, generator=self.generator)

    def chance(self, p: float) -> torch.Tensor:
        return torch.rand(self.n, device=self.device, generator=self.generator) < p

    def randint(self, high: int) -> torch.Tensor:
        return torch.randint(0, high + 1, (self.n,), device=self.device, generator=self.generator)


def augment_batch(images: torch.Tensor, augment: AugmentConfig, fill: torch.Tensor,
                  generator: torch.Generator, flipped: torch.Tensor | None = None) -> torch.Tensor:
    """The albumentations pipeline's steps, in its order, on a uint8 (N, C, H, W) batch, giving
    floats in 0-255, each per image with its own probability from params: random crop with mean
    padding, horizontal flip, rotation and shift-scale-rotation (one affine warp, mean fill), one
    mean-filled square hole, gray. An augmentation with p = 0 draws no random numbers, except the
    flip, which always draws (as it did from the start, so runs with hflip p = 0 keep their draws)
    unless `flipped` says which images to flip. With crop fill 'reflect' the padding mirrors the
    image at its edges (without repeating the edge pixel, as torch's reflect padding).

    Crop and flip only move pixels, so both are one gather of source pixels, taken from the uint8
    batch before it is widened to floats: a few passes over the batch in all, not one per step."""
    n, channels, height, width = images.shape
    device = images.device
    draw = _Draws(n, device, generator)
    rows = torch.arange(height, device=device).expand(n, height)
    cols = torch.arange(width, device=device).expand(n, width)
    pad = augment.crop.padding
    cropping = pad > 0 and augment.crop.p > 0
    if cropping:
        cropped = draw.chance(augment.crop.p)
        rows = rows + (torch.where(cropped, draw.randint(2 * pad), pad) - pad)[:, None]
        cols = cols + (torch.where(cropped, draw.randint(2 * pad), pad) - pad)[:, None]
    flipped = draw.chance(augment.hflip.p) if flipped is None else flipped
    cols = torch.where(flipped[:, None], cols.flip(-1), cols)
    mean_filled = None
    if cropping and augment.crop.fill == "reflect":
        rows, cols = _reflect(rows, height), _reflect(cols, width)
    elif cropping:  # (N, H, W) pixels to set to the dataset mean, in one pass where nothing moves them first
        mean_filled = ((rows < 0) | (rows >= height))[:, :, None] | ((cols < 0) | (cols >= width))[:, None, :]
    source = rows.clamp(0, height - 1)[:, :, None] * width + cols.clamp(0, width - 1)[:, None, :]
    images = images.reshape(n, channels, -1).gather(2, source.view(n, 1, -1).expand(n, channels, -1)).float()
    images = images.view(n, channels, height, width)
    if augment.rotate.p > 0 or augment.shift_scale_rotate.p > 0:
        images = _warp(_fill(images, mean_filled, fill), augment, fill, draw)
        mean_filled = None
    size = augment.cutout.size
    if augment.cutout.p > 0:
        top, left = draw.randint(height - size), draw.randint(width - size)
        inside_rows = _span(top, size, height)
        inside_cols = _span(left, size, width) & draw.chance(augment.cutout.p)[:, None]
        hole = inside_rows[:, :, None] & inside_cols[:, None, :]
        mean_filled = hole if mean_filled is None else mean_filled | hole
    images = _fill(images, mean_filled, fill)
    if augment.to_gray.p > 0:  # ITU-R 601 weights, as cv2's RGB2GRAY that albumentations' ToGray uses
        gray = 0.299 * images[:, 0:1] + 0.587 * images[:, 1:2] + 0.114 * images[:, 2:3]
        images = torch.where(draw.chance(augment.to_gray.p).view(n, 1, 1, 1), gray.expand_as(images), images)
    return images


def _reflect(positions: torch.Tensor, length: int) -> torch.Tensor:
    """Positions outside 0 .. length - 1 mirrored back inside (-1 -> 1, length -> length - 2)."""
    positions = positions.abs()
    return torch.where(positions >= length, 2 * (length - 1) - positions, positions)


def _span(start: torch.Tensor, size: int, length: int) -> torch.Tensor:
    """(N, length) mask of positions start .. start + size - 1, per image."""
    positions = torch.arange(length, device=start.device)
    return (positions >= start[:, None]) & (positions < start[:, None] + size)


def _fill(images: torch.Tensor, where: torch.Tensor | None, fill: torch.Tensor) -> torch.Tensor:
    """The images with the dataset mean at the (N, H, W) mask's pixels (None: no pixel)."""
    return images if where is None else torch.where(where[:, None], fill.view(1, -1, 1, 1), images)


def _warp(images: torch.Tensor, augment: AugmentConfig, fill: torch.Tensor, draw: _Draws) -> torch.Tensor:
    """Rotate (angle within +/- rotate.limit), then shift-scale-rotate as albumentations' Affine
    draws it (shift a whole number of pixels below shift * size, x and y scales apart, angle within
    +/- rotate), about the image centre; both in one bilinear warp, filled with the dataset mean.
    Only Python numbers enter the batch's tensors: no host-to-device copy per step."""
    n, _, height, width = images.shape

    def rotation(degrees: torch.Tensor) -> torch.Tensor:
        cos, sin = torch.cos(torch.deg2rad(degrees)), torch.sin(torch.deg2rad(degrees))
        return torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)

    rot, ssr = augment.rotate, augment.shift_scale_rotate
    rotating, shifting = draw.chance(rot.p), draw.chance(ssr.p)
    first = torch.where(rotating, draw.uniform(-rot.limit, rot.limit), 0.0)
    second = torch.where(shifting, draw.uniform(-ssr.rotate, ssr.rotate), 0.0)
    scales = torch.stack([draw.uniform(1 - ssr.scale, 1 + ssr.scale) for _ in "xy"], -1)
    scales = torch.where(shifting[:, None], scales, 1.0)
    # whole pixels, then in grid_sample's [-1, 1] coordinates (half a side is 1)
    shifts = torch.stack([torch.trunc(draw.uniform(-ssr.shift, ssr.shift) * side) / (side / 2)
                          for side in (width, height)], -1)
    shifts = torch.where(shifting[:, None], shifts, 0.0)
    # output pixel -> input pixel about the centre, in [-1, 1] coordinates: K^-1 A K, K = diag(width/2, height/2)
    inverse = rotation(-first) @ torch.diag_embed(1 / scales) @ rotation(-second)
    inverse[:, 0, 1] *= width / height
    inverse[:, 1, 0] *= height / width
    theta = torch.cat([inverse, -(inverse @ shifts[..., None])], -1)
    grid = torch.nn.functional.affine_grid(theta, list(images.shape), align_corners=False)
    background = fill.view(1, -1, 1, 1)
    warped = torch.nn.functional.grid_sample(images - background, grid, mode="bilinear", padding_mode="zeros",
                                             align_corners=False) + background
    return torch.where((rotating | shifting).view(n, 1, 1, 1), warped, images)


class DeviceBatches:
    """Batches generated on `device` from the whole uint8 dataset kept there."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, augment: AugmentConfig | None, stats: Stats,
                 batch_size: int, device: torch.device, shuffle: bool = False, seed: int = 0, rank: int = 0,
                 world: int = 1) -> None:
        self.images = torch.from_numpy(images).to(device).permute(0, 3, 1, 2).contiguous()
        self.labels = torch.from_numpy(labels).to(device)
        self.augment, self.batch_size, self.device, self.seed = augment, batch_size, device, seed
        self.rank, self.world = rank, world
        self.order = torch.Generator().manual_seed(seed) if shuffle else None
        self.fill = torch.tensor(stats.fill, dtype=torch.float32, device=device)
        # Normalize(stats) on 0-255 values as one multiply-add: x * scale + shift = (x - mean) / std
        std = torch.tensor(stats.std, device=device).view(1, -1, 1, 1) * 255
        self.scale = 1 / std
        self.shift = -torch.tensor(stats.mean, device=device).view(1, -1, 1, 1) * 255 / std
        self.generator = torch.Generator(device=device).manual_seed(seed)
        self.odd_epoch = False
        # alternating flips: each image's flip in the first epoch, drawn once from the seed; it
        # then flips on every other epoch (airbench, arXiv:2404.00498)
        self.first_flips = None
        if augment is not None and augment.hflip.alternate and augment.hflip.p > 0:
            first = torch.rand(len(labels), generator=torch.Generator().manual_seed(seed)) < augment.hflip.p
            self.first_flips = first.to(device)

    def flips(self, index: torch.Tensor) -> torch.Tensor | None:
        """Which images of a batch the alternating flip mirrors this epoch (None: not alternating)."""
        if self.first_flips is None:
            return None
        return self.first_flips[index] ^ (not self.odd_epoch)

    def set_epoch(self, epoch: int) -> None:
        self.odd_epoch = epoch % 2 == 1
        if self.order is not None:
            self.order.manual_seed(epoch_seed(self.seed, epoch))
        self.generator.manual_seed(augment_seed(self.seed, epoch, self.rank))

    def __len__(self) -> int:
        return steps_per_pass(len(self.labels), self.batch_size, self.world, training=self.order is not None)

    def __iter__(self):
        for index in batch_order(len(self.labels), self.batch_size, self.order, self.rank, self.world):
            index = index.to(self.device, non_blocking=True)
            batch = self.images[index]
            batch = (augment_batch(batch, self.augment, self.fill, self.generator, self.flips(index))
                     if self.augment is not None else batch.float())
            yield torch.addcmul(self.shift, batch, self.scale), self.labels[index]


def train_batches(loader: str, images: np.ndarray, labels: np.ndarray, augment: AugmentConfig, stats: Stats,
                  batch_size: int, seed: int, device: torch.device, workers: int = 0, rank: int = 0,
                  world: int = 1) -> Batches:
    """Shuffled, augmented training batches on the path `loader` names (`workers` DataLoader
    processes for the albumentations path); process `rank` of `world` gets its part of each
    global batch of `batch_size`."""
    if loader == "device":
        return DeviceBatches(images, labels, augment, stats, batch_size, device, shuffle=True, seed=seed,
                             rank=rank, world=world)
    transform = train_transform(augment, stats, images.shape[1], seed=seed)
    return ArrayBatches(images, labels, transform, batch_size, shuffle=True, seed=seed,
                        pin_memory=device.type == "cuda", workers=workers, rank=rank, world=world)


def eval_batches(images: np.ndarray, labels: np.ndarray, stats: Stats, batch_size: int, device: torch.device,
                 loader: str = "albumentations") -> Batches:
    """Normalised batches in order, for scoring."""
    if loader == "device":
        return DeviceBatches(images, labels, None, stats, batch_size, device)
    return ArrayBatches(images, labels, eval_transform(stats), batch_size, pin_memory=device.type == "cuda")
