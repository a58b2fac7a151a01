"""The prepared dataset: uint8 NHWC images, int64 labels and class names, in one .npz file."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cifarlab.errors import UserError
from cifarlab.io import save_arrays


@dataclass
class Prepared:
    x_train: np.ndarray  # (N, H, W, 3) uint8
    y_train: np.ndarray  # (N,) int64
    x_test: np.ndarray
    y_test: np.ndarray
    classes: list[str]

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def save_prepared(path: str | Path, data: Prepared) -> None:
    save_arrays(path, x_train=data.x_train, y_train=data.y_train, x_test=data.x_test,
                y_test=data.y_test, classes=np.array(data.classes, dtype=str))


def load_prepared(path: str | Path) -> Prepared:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: prepared dataset not found; run `dvc repro download` first")
    with np.load(path, allow_pickle=False) as npz:
        return Prepared(npz["x_train"], npz["y_train"], npz["x_test"], npz["y_test"],
                        [str(name) for name in npz["classes"]])


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
