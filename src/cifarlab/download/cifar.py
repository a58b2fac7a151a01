"""The official CIFAR-10 python release: downloaded and md5-checked (download.fetch),
and read with our own unpickler that only accepts plain data (the batches are pickles: a file a
user supplies could run code under torchvision's CIFAR10 class, which unpickles freely)."""
from __future__ import annotations

import io
import math
import pickle
import posixpath
from pathlib import Path

import numpy as np

from cifarlab.core.errors import UserError, first_line, set_key
from cifarlab.download.fetch import fetch
from cifarlab.download.filetree import FileTree

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
BATCH_DIR = "cifar-10-batches-py"
TRAIN_BATCHES = [f"data_batch_{i}" for i in range(1, 6)]
TEST_BATCH = "test_batch"
META = "batches.meta"

class _ArrayState:
    """An ndarray as a pickle describes it (shape, dtype, raw bytes), kept unallocated until its
    size is checked against the bytes it holds: a crafted shape of a few bytes could otherwise ask
    numpy for gigabytes."""

    def __init__(self, *_args) -> None:
        self.state: tuple = ()

    def __setstate__(self, state: tuple) -> None:
        self.state = state


def _reconstruct(_cls, _shape, _typecode) -> _ArrayState:
    return _ArrayState()


def _latin1(text: str, codec: str = "utf-8") -> bytes:
    """Python 2's byte strings, as protocol-2 pickles store them; no other codec."""
    if codec.lower().replace("_", "-") not in ("latin1", "latin-1", "iso-8859-1"):
        raise pickle.UnpicklingError(f"refusing to decode text with codec {codec!r}")
    return text.encode("latin-1")


# the only globals a CIFAR batch names, each mapped to a stand-in that allocates nothing unchecked
_ALLOWED_GLOBALS = {
    ("numpy", "ndarray"): _ArrayState, ("numpy", "dtype"): np.dtype,
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct, ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("_codecs", "encode"): _latin1,
}


class _DataOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return _ALLOWED_GLOBALS[module, name]


def _array(value: _ArrayState) -> np.ndarray:
    """The array a pickle describes, once its shape and dtype account for exactly its bytes."""
    state = value.state[1:] if len(value.state) == 5 else value.state  # (version,) shape, dtype, fortran, bytes
    if len(state) != 4:
        raise pickle.UnpicklingError("an array without shape, dtype and data")
    shape, dtype, fortran, raw = state
    if not isinstance(dtype, np.dtype) or dtype.hasobject or not isinstance(raw, bytes):
        raise pickle.UnpicklingError("an array of objects or without raw data")
    if not isinstance(shape, tuple) or not all(isinstance(n, int) and n >= 0 for n in shape):
        raise pickle.UnpicklingError(f"an array of shape {shape!r}")
    if math.prod(shape) * dtype.itemsize != len(raw):
        raise pickle.UnpicklingError(f"an array of shape {shape} and {dtype} that holds {len(raw):,} bytes")
    return np.frombuffer(raw, dtype).reshape(shape, order="F" if fortran else "C")


def download(url: str, dest: Path, md5: str) -> Path:
    """The release at `dest`, fetched and md5-checked unless a good copy is there already."""
    how_to_fix = (f"download it on a machine with internet and {set_key('data.source', 'PATH')}, PATH the "
                  "local cifar-10-python.tar.gz (or an image-folder tree train/<class>/*, test/<class>/*)")
    return fetch(url, dest, "md5", md5, how_to_fix)


def _read_batch(data: bytes, where: str) -> object:
    """A batch's pickle as plain data, its arrays checked and built; any damage or trick is one
    line naming the file."""
    try:
        batch = _DataOnlyUnpickler(io.BytesIO(data), encoding="bytes").load()
        if isinstance(batch, dict):
            batch = {key: _array(value) if isinstance(value, _ArrayState) else value for key, value in batch.items()}
        return batch
    except Exception as err:  # the unpickler raises many kinds of exception on damaged or crafted bytes
        reason = first_line(err)
        raise UserError(f"{where}: not a readable CIFAR batch ({reason})") from None


ROW = 32 * 32 * 3  # one image per row: 1024 red, then green, then blue values


def _images_and_labels(batch: object, where: str, classes: int) -> tuple[np.ndarray, np.ndarray]:
    """The batch's images (N, 32, 32, 3) and labels, after checking its shape, pixel values,
    label count and label range, so nothing misaligned or out of range is ever trained on."""
    if not isinstance(batch, dict) or not {b"data", b"labels"} <= batch.keys():
        found = f"keys {sorted(batch)}" if isinstance(batch, dict) else f"a pickled {type(batch).__name__}"
        raise UserError(f"{where}: not a CIFAR batch (found {found}; expected a dict with data and labels)")
    data, labels = np.asarray(batch[b"data"]), np.asarray(batch[b"labels"])
    if data.ndim != 2 or data.shape[1] != ROW or not np.issubdtype(data.dtype, np.integer):
        raise UserError(f"{where}: data is {data.dtype} of shape {data.shape}; a CIFAR batch holds one "
                        f"32x32 RGB image per row of {ROW} integers")
    if data.size and (data.min() < 0 or data.max() > 255):
        raise UserError(f"{where}: pixel values run from {data.min()} to {data.max()}; expected 0 to 255")
    if labels.ndim != 1 or len(labels) != len(data) or not np.issubdtype(labels.dtype, np.integer):
        raise UserError(f"{where}: {labels.size} labels of type {labels.dtype} for {len(data)} images; "
                        "expected one integer label per image")
    if labels.size and (labels.min() < 0 or labels.max() >= classes):
        raise UserError(f"{where}: labels run from {labels.min()} to {labels.max()}; batches.meta names "
                        f"{classes} classes, so labels must be 0 to {classes - 1}")
    return data.astype(np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels.astype(np.int64)


def _class_names(meta: object, where: str) -> list[str]:
    names = meta.get(b"label_names") if isinstance(meta, dict) else None
    if not isinstance(names, list) or not names or not all(isinstance(name, bytes) for name in names):
        raise UserError(f"{where}: no label_names; expected a dict whose label_names lists the class names")
    try:
        return [name.decode() for name in names]
    except UnicodeDecodeError:
        raise UserError(f"{where}: label_names are not UTF-8 text") from None


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
    classes = _class_names(batches[META], tree.where(member[META]))
    parts = [_images_and_labels(batches[name], tree.where(member[name]), len(classes)) for name in TRAIN_BATCHES]
    x_test, y_test = _images_and_labels(batches[TEST_BATCH], tree.where(member[TEST_BATCH]), len(classes))
    x_train = np.concatenate([x for x, _ in parts])
    y_train = np.concatenate([y for _, y in parts])
    return x_train, y_train, x_test, y_test, classes
