"""The official CIFAR-10 python release: download with an md5 check, and read its batches with
an unpickler that only accepts plain data (the batches are pickles; we never run their code)."""
from __future__ import annotations

import hashlib
import io
import pickle
import posixpath
import urllib.request
from pathlib import Path

import numpy as np
from tqdm import tqdm

from cifarlab.data.filetree import FileTree
from cifarlab.errors import UserError
from cifarlab.io import update_digest

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
BATCH_DIR = "cifar-10-batches-py"
TRAIN_BATCHES = [f"data_batch_{i}" for i in range(1, 6)]
TEST_BATCH = "test_batch"
META = "batches.meta"

_ALLOWED_GLOBALS = {
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("_codecs", "encode"),
}


class _DataOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def md5sum(path: Path) -> str:
    return update_digest(hashlib.md5(), path).hexdigest()


def download(url: str, dest: Path, md5: str) -> Path:
    """Fetch `url` to `dest` (skipped when a copy with the right md5 is there already).

    A failed or cut-off download and a checksum mismatch remove the partial file."""
    if dest.is_file() and md5sum(dest) == md5:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".part")
    how_to_fix = ("download it on a machine with internet and set data.source in params.yaml to "
                  "the local cifar-10-python.tar.gz (or to an image-folder tree train/<class>/*, "
                  "test/<class>/*)")
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(partial, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc="download", disable=None) as bar:
                for block in iter(lambda: response.read(1 << 20), b""):
                    out.write(block)
                    bar.update(len(block))
            if total is not None and out.tell() != total:
                raise OSError(f"got {out.tell()} of {total} bytes")
    except (OSError, ValueError) as err:
        partial.unlink(missing_ok=True)
        raise UserError(f"could not download {url} ({err}); partial file removed. "
                        f"To work offline, {how_to_fix}") from None
    actual = md5sum(partial)
    if actual != md5:
        partial.unlink(missing_ok=True)
        raise UserError(f"checksum mismatch for {url}: md5 {actual}, expected {md5}; "
                        f"the file was removed. Retry, or {how_to_fix}")
    partial.replace(dest)
    return dest


def _read_batch(data: bytes, where: str) -> dict:
    try:
        return _DataOnlyUnpickler(io.BytesIO(data), encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as err:
        raise UserError(f"{where}: not a readable CIFAR batch ({err})") from None


def _images_and_labels(batch: dict, where: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        data = np.asarray(batch[b"data"], dtype=np.uint8)
        labels = np.asarray(batch[b"labels"], dtype=np.int64)
    except KeyError as err:
        raise UserError(f"{where}: CIFAR batch lacks {err}") from None
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels


def is_batch_dir(tree: FileTree, folder: str) -> bool:
    return {posixpath.join(folder, TEST_BATCH), posixpath.join(folder, META)} <= tree.files


def load_batch_dir(tree: FileTree, folder: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Read a cifar-10-batches-py/ folder (on disk or in an archive) into NHWC uint8 arrays and class names."""
    member = {name: posixpath.join(folder, name) for name in (META, *TRAIN_BATCHES, TEST_BATCH)}
    missing = [name for name in TRAIN_BATCHES if member[name] not in tree.files]
    if missing:
        raise UserError(f"{tree.where(folder)}: missing training batches {', '.join(missing)}")
    batches = {posixpath.basename(name): _read_batch(data, tree.where(name))
               for name, data in tree.read(member.values())}
    classes = [name.decode() for name in batches[META].get(b"label_names", [])]
    if not classes:
        raise UserError(f"{tree.where(member[META])}: no label_names")
    parts = [_images_and_labels(batches[name], tree.where(member[name])) for name in TRAIN_BATCHES]
    x_test, y_test = _images_and_labels(batches[TEST_BATCH], tree.where(member[TEST_BATCH]))
    x_train = np.concatenate([x for x, _ in parts])
    y_train = np.concatenate([y for _, y in parts])
    return x_train, y_train, x_test, y_test, classes
