"""Batches for training and scoring: a torch Dataset over the prepared uint8 arrays with an
albumentations transform, or the device data path, as train.loader chooses."""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from cifarlab.augment import eval_transform, train_transform
from cifarlab.device_data import DeviceBatches


class ArrayDataset(Dataset):
    def __init__(self, images: np.ndarray, labels: np.ndarray, transform) -> None:
        self.images = images
        self.labels = labels
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.transform(image=self.images[index])["image"], int(self.labels[index])


def make_loader(images: np.ndarray, labels: np.ndarray, transform, batch_size: int,
                shuffle: bool = False, seed: int = 0, pin_memory: bool = False) -> DataLoader:
    """A DataLoader in the main process; shuffling is seeded so a run is repeatable."""
    generator = torch.Generator().manual_seed(seed) if shuffle else None
    return DataLoader(ArrayDataset(images, labels, transform), batch_size=batch_size,
                      shuffle=shuffle, generator=generator, pin_memory=pin_memory)


def make_loaders(params, data, stats, device):
    """Training and test batches: per-image albumentations on the CPU, or whole batches on the device."""
    cfg, test_batch = params["train"], params["evaluate"]["batch_size"]
    if cfg["loader"] == "device":
        return (DeviceBatches(data.x_train, data.y_train, params["augment"], stats["mean"], stats["std"],
                              cfg["batch_size"], device, shuffle=True),
                DeviceBatches(data.x_test, data.y_test, None, stats["mean"], stats["std"], test_batch, device))
    augment = train_transform(params["augment"], stats["mean"], stats["std"], data.x_train.shape[1], seed=cfg["seed"])
    pin = device.type == "cuda"
    return (make_loader(data.x_train, data.y_train, augment, cfg["batch_size"], shuffle=True, seed=cfg["seed"],
                        pin_memory=pin),
            make_loader(data.x_test, data.y_test, eval_transform(stats["mean"], stats["std"]), test_batch,
                        pin_memory=pin))
