"""Batches for training and scoring, on either path train.loader chooses, behind one interface:
iterate (images, labels) batches, len() batches per pass, and set_epoch(epoch) (as
DistributedSampler does) so each epoch's shuffle and augmentation depend only on (seed, epoch)
and an interrupted run resumes to the same result.

Under data-parallel training every process draws the same shuffle and takes its own contiguous
part of each global batch (`rank` of `world`), so the N processes together see exactly the
batches one process would; only the augmentation's random draws are per process.

- albumentations: per-image augmentation on the CPU in a DataLoader (the course notebooks' way),
  by the pipelines of augment.py;
- device: the uint8 dataset lives on the training device and whole batches are augmented there
  by device_augment.py and normalised, removing the per-sample CPU work that otherwise sets the
  pace on a GPU."""
from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Protocol

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, get_worker_info

from cifarlab.feed.augment import eval_transform, train_transform
from cifarlab.feed.device_augment import augment_batch
from cifarlab.stats import Stats

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
