"""Image-folder trees, train/<class>/* and test/<class>/*: any PIL-readable format, converted to
RGB and resized to the configured size; class names come from the train folder names."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from cifarlab.data.prepared import Prepared, split_indices
from cifarlab.errors import UserError

SPLITS = ("train", "test")


def is_image_tree(path: Path) -> bool:
    return all((path / split).is_dir() for split in SPLITS)


def _class_dirs(split_dir: Path) -> dict[str, Path]:
    return {d.name: d for d in sorted(split_dir.iterdir()) if d.is_dir() and not d.name.startswith(".")}


def _scan(root: Path) -> tuple[list[str], dict[str, tuple[list[Path], np.ndarray]]]:
    """List every image file per split with its class index, checking the tree's shape."""
    train_classes = _class_dirs(root / "train")
    if not train_classes:
        raise UserError(f"{root / 'train'}: no class folders; expected train/<class>/<image files>")
    classes = list(train_classes)
    unknown = sorted(set(_class_dirs(root / "test")) - set(classes))
    if unknown:
        raise UserError(f"{root / 'test'}: classes {', '.join(unknown)} are not in train/; "
                        f"train has {', '.join(classes)}")
    listing = {}
    for split in SPLITS:
        paths, labels = [], []
        for name, folder in _class_dirs(root / split).items():
            files = sorted(f for f in folder.iterdir() if f.is_file() and not f.name.startswith("."))
            if not files:
                raise UserError(f"{folder}: empty class folder; every class needs at least one image")
            paths += files
            labels += [classes.index(name)] * len(files)
        if not paths:
            raise UserError(f"{root / split}: no images; expected {split}/<class>/<image files>")
        listing[split] = (paths, np.array(labels, dtype=np.int64))
    return classes, listing


def read_image(path: Path, size: int) -> np.ndarray:
    """Decode one image as RGB uint8 (size, size, 3); an unreadable file is a UserError naming it."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)  # a few KB that decode to gigapixels
            return _decode(path, size)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise UserError(f"{path}: refusing an image of more than {Image.MAX_IMAGE_PIXELS:,} pixels "
                        "(a decompression bomb?)") from None
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise UserError(f"{path}: not a readable image ({err})") from None


def _decode(path: Path, size: int) -> np.ndarray:
    with Image.open(path) as img:
        img = img.convert("RGB")
        if img.size != (size, size):
            img = img.resize((size, size), Image.BILINEAR)
        return np.asarray(img, dtype=np.uint8)


def load_image_tree(root: Path, image_size: int, subset: dict[str, int], val: int, seed: int) -> Prepared:
    """Read the tree, decoding only the images the splits keep."""
    classes, listing = _scan(root)
    chosen = split_indices(listing["train"][1], listing["test"][1], subset, val, seed)
    arrays = {}
    for split, source in (("train", "train"), ("val", "train"), ("test", "test")):
        paths, labels = listing[source]
        keep = chosen[split]
        # disable=None: no bar when not a terminal; the bar is closed before an error prints
        with tqdm(keep, desc=f"read {split}", unit="img", leave=False, disable=None) as bar:
            images = [read_image(paths[i], image_size) for i in bar]
        shape = (0, image_size, image_size, 3)
        arrays[split] = (np.stack(images) if images else np.zeros(shape, np.uint8), labels[keep])
    return Prepared(*arrays["train"], *arrays["test"], classes, *arrays["val"])
