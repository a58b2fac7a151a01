"""The prepared dataset: uint8 NHWC images and int64 labels of the train, validation and test
splits, and class names, in one .npz file. The validation split is carved from the source's
training images, so the test split can stay out of every decision made while training."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cifarlab.core.errors import UserError
from cifarlab.core.io import read_checked, save_arrays


@dataclass
class Prepared:
    x_train: np.ndarray  # (N, H, W, 3) uint8
    y_train: np.ndarray  # (N,) int64
    x_test: np.ndarray
    y_test: np.ndarray
    classes: list[str]
    x_val: np.ndarray = field(default=None)  # empty when data.val is 0
    y_val: np.ndarray = field(default=None)
    # (training, test) images the source holds: a subset as large as the source used every image
    source_sizes: tuple[int, int] = field(default=None)

    def __post_init__(self) -> None:
        if self.x_val is None:
            self.x_val = self.x_train[:0]
            self.y_val = self.y_train[:0]
        if self.source_sizes is None:
            self.source_sizes = (len(self.y_train) + len(self.y_val), len(self.y_test))

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def save_prepared(path: str | Path, data: Prepared) -> None:
    save_arrays(path, x_train=data.x_train, y_train=data.y_train, x_val=data.x_val, y_val=data.y_val,
                x_test=data.x_test, y_test=data.y_test, classes=np.array(data.classes, dtype=str),
                source_sizes=np.array(data.source_sizes, dtype=np.int64))


def _read(path: Path) -> Prepared:
    with np.load(path, allow_pickle=False) as npz:
        data = Prepared(npz["x_train"], npz["y_train"], npz["x_test"], npz["y_test"],
                        [str(name) for name in npz["classes"]], npz["x_val"], npz["y_val"],
                        tuple(int(n) for n in npz["source_sizes"]))
    for images, labels in ((data.x_train, data.y_train), (data.x_val, data.y_val), (data.x_test, data.y_test)):
        if images.dtype != np.uint8 or images.ndim != 4 or len(images) != len(labels):
            raise ValueError("arrays of the wrong shape")
    return data


def load_prepared(path: str | Path) -> Prepared:
    """The prepared arrays; missing or damaged, one line that says to rerun the download stage."""
    return read_checked(path, _read)


def split_indices(train_labels: np.ndarray, test_labels: np.ndarray, subset: dict[str, int], val: int,
                  seed: int, classes: list[str]) -> dict[str, np.ndarray]:
    """Which source images each split keeps: `val` class-balanced training images are held out
    first, then the class-balanced subsets (0 = all) of the rest and of the test images.
    'train' and 'val' index the source's training images, 'test' its test images."""
    if val >= len(train_labels):
        raise UserError(f"params.yaml: data.val = {val} leaves no training images (the source has "
                        f"{len(train_labels)}); allowed: 0..{len(train_labels) - 1}")
    held_out = balanced_indices(train_labels, val, seed) if val else np.array([], dtype=np.int64)
    rest = np.setdiff1d(np.arange(len(train_labels)), held_out)
    train = rest[balanced_indices(train_labels[rest], subset["train"], seed)]
    present = np.unique(train_labels)
    starved = np.setdiff1d(present, train_labels[train])
    if len(starved):
        raise UserError(f"params.yaml: data.val = {val} and data.subset.train = {subset['train']} leave class "
                        f"{classes[starved[0]]!r} ({len(starved)} class(es) in all) without a training image; "
                        f"lower data.val or raise data.subset.train (at least one image per class: {len(present)})")
    return {"train": train, "val": held_out, "test": balanced_indices(test_labels, subset["test"], seed)}


def balanced_indices(labels: np.ndarray, count: int, seed: int) -> np.ndarray:
    """Sorted indices of a class-balanced random subset of `count` items (0 = all of them).

    Each class gets count // k items, the first count % k classes one more; a class with
    fewer items than its share gives all it has."""
    if count == 0 or count >= len(labels):
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    share, extra = divmod(count, len(classes))
    chosen = []
    for rank, cls in enumerate(classes):
        members = np.flatnonzero(labels == cls)
        take = min(len(members), share + (1 if rank < extra else 0))
        chosen.append(rng.choice(members, size=take, replace=False))
    return np.sort(np.concatenate(chosen))
