"""data.source → Prepared: the official download, or a local tarball, batch folder, image tree
or archive of one."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from cifarlab.core.errors import UserError
from cifarlab.core.paths import user_path
from cifarlab.download import cifar
from cifarlab.download.filetree import ARCHIVE_SUFFIXES, FileTree, is_archive, open_tree
from cifarlab.download.imagefolder import is_image_tree, load_image_tree
from cifarlab.model_input import square_input
from cifarlab.prepared import Prepared, split_indices

OFFICIAL = "cifar10"
ALLOWED = ("'cifar10' (official download) or a local path to cifar-10-python.tar.gz, an extracted "
           "cifar-10-batches-py/ folder, an image-folder tree with train/<class>/ and test/<class>/, "
           "or a .tar.gz/.zip of such a tree")


def find_root(tree: FileTree) -> str:
    """The tree's top, or the one folder an archive wrapped the data in."""
    if cifar.is_batch_dir(tree, "") or is_image_tree(tree, ""):
        return ""
    if cifar.is_batch_dir(tree, cifar.BATCH_DIR):
        return cifar.BATCH_DIR
    subdirs = tree.subdirs("")
    if len(subdirs) == 1 and (cifar.is_batch_dir(tree, subdirs[0]) or is_image_tree(tree, subdirs[0])):
        return subdirs[0]
    raise UserError(f"data.source: no train/ and test/ split (nor cifar-10-batches-py/) found in "
                    f"{tree.label}; expected {ALLOWED}")


def _resize_all(images: np.ndarray, size: int) -> np.ndarray:
    """The batches' square images at `size` by the one rule (model_input) every source uses."""
    from PIL import Image

    if images.shape[1:3] == (size, size):
        return images
    if not len(images):
        return np.zeros((0, size, size, images.shape[-1]), dtype=np.uint8)
    return np.stack([square_input(Image.fromarray(img), size) for img in images])


def _load_batches(tree: FileTree, root: str, image_size: int, subset: dict[str, int], val: int,
                  seed: int) -> Prepared:
    x_train, y_train, x_test, y_test, classes = cifar.load_batch_dir(tree, root)
    keep = split_indices(y_train, y_test, subset, val, seed, classes)
    train, held_out, test = keep["train"], keep["val"], keep["test"]
    return Prepared(_resize_all(x_train[train], image_size), y_train[train],
                    _resize_all(x_test[test], image_size), y_test[test], classes,
                    _resize_all(x_train[held_out], image_size), y_train[held_out], (len(y_train), len(y_test)))


def prepare(source: str, image_size: int, subset: dict[str, int], seed: int, raw_dir: Path,
            val: int = 0) -> Prepared:
    """Load `source` into the prepared format (an archive is read in place, never extracted),
    holding out `val` class-balanced training images as the validation split."""
    if source == OFFICIAL:
        path = cifar.download(cifar.CIFAR10_URL, raw_dir / "cifar-10-python.tar.gz", cifar.CIFAR10_MD5)
    else:
        path = user_path(source)
        if not path.exists():
            raise UserError(f"params.yaml: data.source = {source!r}: no such file or folder; "
                            f"expected {ALLOWED}")
    if not path.is_dir() and not is_archive(path):
        raise UserError(f"data.source = {source!r} is a file but not a {'/'.join(ARCHIVE_SUFFIXES)} "
                        f"archive; expected {ALLOWED}")
    with open_tree(path) as tree:
        root = find_root(tree)
        if cifar.is_batch_dir(tree, root):
            return _load_batches(tree, root, image_size, subset, val, seed)
        return load_image_tree(tree, root, image_size, subset, val, seed)
