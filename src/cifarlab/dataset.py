"""A torch Dataset over the prepared uint8 arrays with an albumentations transform."""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset


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
                shuffle: bool = False, seed: int = 0) -> DataLoader:
    """A DataLoader in the main process; shuffling is seeded so a run is repeatable."""
    generator = torch.Generator().manual_seed(seed) if shuffle else None
    return DataLoader(ArrayDataset(images, labels, transform), batch_size=batch_size,
                      shuffle=shuffle, generator=generator)
