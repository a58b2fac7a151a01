"""Hostile inputs, round 4: damaged image metadata, damaged archive members, CIFAR pickles that
use their allowed globals against the loader, integer pixels of undeclared depth, names that are
not text, and Ctrl-C during a stage's imports. Each ends in one line naming the file (or loads
correctly), before any output is written."""
from __future__ import annotations

import io
import os
import pickle
import re
import signal
import struct
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cifarlab.core.errors import INTERRUPTED, INTERRUPTED_LINE, UserError
from cifarlab.download.imagefolder import decode_image
from cifarlab.download.sources import prepare
from conftest import copy_project, make_arrays, write_cifar_batches, write_image_tree

NO_SUBSET = {"train": 0, "test": 0}


def _one_line(err: pytest.ExceptionInfo, starts: str) -> str:
    message = str(err.value)
    assert message.startswith(starts) and "\n" not in message, message
    return message


# --- malformed image metadata -------------------------------------------------------------------

def _entry(tag: int, kind: int, count: int, value: bytes) -> bytes:
    return struct.pack("<HHI", tag, kind, count) + value.ljust(4, b"\0")[:4]


def _exif(entries: list[bytes], count: int | None = None, ifd_offset: int = 8, tail: bytes = b"") -> bytes:
    """A little-endian EXIF block: header, one IFD of `entries` (its count may lie), then `tail`."""
    ifd = struct.pack("<H", len(entries) if count is None else count) + b"".join(entries) + b"\0\0\0\0"
    return b"Exif\0\0" + b"II*\0" + struct.pack("<I", ifd_offset) + ifd + tail


ORIENTATION, SHORT, ASCII, LONG, RATIONAL, EXIF_IFD = 0x0112, 3, 2, 4, 5, 0x8769
DAMAGED_EXIF = {
    "orientation as text": _exif([_entry(ORIENTATION, ASCII, 2, b"6\0")]),
    "orientation with no value": _exif([_entry(ORIENTATION, SHORT, 0, b"")]),
    "orientation out of range": _exif([_entry(ORIENTATION, SHORT, 1, struct.pack("<H", 9))]),
    "orientation as a rational past the end": _exif([_entry(ORIENTATION, RATIONAL, 1, struct.pack("<I", 0xFFFF))]),
    "orientation of three longs past the end": _exif([_entry(ORIENTATION, LONG, 3, struct.pack("<I", 0xFFFFF))]),
    "an IFD that claims more entries than it has": _exif([_entry(ORIENTATION, SHORT, 1, b"\x06\0")], count=40),
    "an IFD offset past the end": _exif([], ifd_offset=0xFFFFFF),
    "an EXIF sub-IFD past the end": _exif([_entry(EXIF_IFD, LONG, 1, struct.pack("<I", 0xFFFFF))]),
    "an unknown type": _exif([_entry(ORIENTATION, 99, 1, b"\x06\0")]),
}


@pytest.mark.parametrize("exif", DAMAGED_EXIF.values(), ids=DAMAGED_EXIF.keys())
def test_damaged_exif_loads_as_stored_or_is_one_line_naming_the_file(exif):
    """Which way is up is either read, ignored as Pillow does for values it does not know, or
    the file is refused in one line; never a traceback."""
    picture = np.zeros((16, 16, 3), np.uint8)
    picture[:8, :8] = (255, 0, 0)
    buffer = io.BytesIO()
    Image.fromarray(picture).save(buffer, "JPEG", exif=exif, quality=95)
    try:
        decoded = decode_image(buffer.getvalue(), "photo.jpg", 16)
    except UserError as err:
        assert str(err).startswith("photo.jpg: ") and "\n" not in str(err)
    else:
        assert decoded.shape == (16, 16, 3) and decoded.dtype == np.uint8


# --- damaged archive members ----------------------------------------------------------------------

def _zip_tree(tmp_path: Path, method: int) -> tuple[Path, str]:
    """An image tree zipped with `method`, one member's compressed bytes damaged in the middle."""
    tree = write_image_tree(tmp_path / "tree", make_arrays(per_class_train=3, per_class_test=2))
    archive = tmp_path / "tree.zip"
    with zipfile.ZipFile(archive, "w", compression=method) as zf:
        for path in sorted(tree.rglob("*.png")):
            zf.write(path, path.relative_to(tree).as_posix())
    with zipfile.ZipFile(archive) as zf:
        victim = next(info for info in zf.infolist() if info.filename.startswith("train/"))
    data = bytearray(archive.read_bytes())
    name_length, extra_length = struct.unpack("<HH", data[victim.header_offset + 26:victim.header_offset + 30])
    start = victim.header_offset + 30 + name_length + extra_length
    middle = start + victim.compress_size // 2
    data[middle:middle + 8] = bytes(b ^ 0xA5 for b in data[middle:middle + 8])
    archive.write_bytes(bytes(data))
    return archive, victim.filename


@pytest.mark.parametrize("method", [zipfile.ZIP_LZMA, zipfile.ZIP_BZIP2, zipfile.ZIP_DEFLATED, zipfile.ZIP_STORED],
                         ids=["lzma", "bzip2", "deflate", "stored"])
def test_a_damaged_zip_member_is_one_line_naming_archive_and_member(tmp_path, method):
    archive, member = _zip_tree(tmp_path, method)
    with pytest.raises(UserError) as err:
        prepare(str(archive), 32, NO_SUBSET, 0, tmp_path / "raw")
    _one_line(err, f"{archive}: {member}: ")


@pytest.mark.parametrize("mode", ["w:xz", "w:bz2", "w:gz"])
def test_a_tar_damaged_mid_stream_is_one_line_naming_it(tmp_path, mode):
    """A compressed tar is one stream: damage is found while listing it (the archive is named) or
    while reading a member (archive and member are named)."""
    tree = write_image_tree(tmp_path / "tree", make_arrays(per_class_train=20, per_class_test=2))
    archive = tmp_path / f"tree.tar.{mode[2:]}"
    with tarfile.open(archive, mode) as tar:
        tar.add(tree, arcname=".")
    data = bytearray(archive.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 16] = bytes(b ^ 0x5A for b in data[middle:middle + 16])
    archive.write_bytes(bytes(data))
    with pytest.raises(UserError) as err:
        prepare(str(archive), 32, NO_SUBSET, 0, tmp_path / "raw")
    _one_line(err, f"{archive}: ")


# --- CIFAR pickles that turn their allowed globals against the loader -----------------------------

class _Crafted:
    """Pickles as a numpy array would, with a state of the test's choosing."""

    def __init__(self, state: tuple) -> None:
        self.state = state

    def __reduce__(self):
        from numpy._core.multiarray import _reconstruct
        return _reconstruct, (np.ndarray, (0,), b"b"), self.state


class _Codec:
    def __init__(self, codec: str) -> None:
        self.codec = codec

    def __reduce__(self):
        import codecs
        return codecs.encode, ("abc", self.codec)


UINT8 = np.dtype(np.uint8)
CRAFTED_BATCHES = {
    "a shape of 28.6 GiB in a few bytes": (_Crafted((1, (100_000, 102_400, 3), UINT8, False, b"")), "holds 0 bytes"),
    "a shape that overflows": (_Crafted((1, (2**62, 2**62), UINT8, False, b"\0" * 16)), "holds 16 bytes"),
    "a negative dimension": (_Crafted((1, (-1, 3072), UINT8, False, b"")), r"shape \(-1, 3072\)"),
    "an array of objects": (_Crafted((1, (2,), np.dtype(object), False, [1, 2])), "array of objects"),
    "a huge item size": (_Crafted((1, (1,), np.dtype((np.void, 2**30)), False, b"")), "holds 0 bytes"),
    "an unknown codec": (_Codec("no-such-codec"), "codec 'no-such-codec'"),
    "a codec that is not latin-1": (_Codec("rot13"), "codec 'rot13'"),
}


def _batch_folder(tmp_path: Path, data: object) -> Path:
    folder = write_cifar_batches(tmp_path / "cifar-10-batches-py", make_arrays(per_class_train=5, per_class_test=2))
    (folder / "data_batch_1").write_bytes(pickle.dumps({b"data": data, b"labels": [0, 1, 2]}, protocol=4))
    return folder


@pytest.mark.parametrize("crafted, reason", CRAFTED_BATCHES.values(), ids=CRAFTED_BATCHES.keys())
def test_crafted_cifar_batches_are_refused_before_anything_is_allocated(tmp_path, crafted, reason):
    """In a process capped at 1 GiB of address space beyond what it has at start, so a loader that
    believed the shape would fail here, not take the machine."""
    folder = _batch_folder(tmp_path, crafted)
    code = (
        "import resource, sys\n"
        "from cifarlab.core.errors import UserError\n"
        "from cifarlab.download.sources import prepare\n"
        "with open('/proc/self/statm') as f: used = int(f.read().split()[0]) * resource.getpagesize()\n"
        "resource.setrlimit(resource.RLIMIT_AS, (used + 2**30, used + 2**30))\n"
        "try:\n"
        f"    prepare({str(folder)!r}, 32, {{'train': 0, 'test': 0}}, 0, None)\n"
        "except UserError as err:\n"
        "    print(err)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    line = result.stdout.strip()
    assert line.startswith(f"{folder / 'data_batch_1'}: not a readable CIFAR batch (") and "\n" not in line
    assert re.search(reason, line), line


# --- integer pixels: the white level the file declares -------------------------------------------

RAMP = np.linspace(0, 255, 32 * 32).reshape(32, 32)


def test_eight_bit_values_in_a_32_bit_tiff_are_refused_not_darkened():
    """A 32-bit sample does not say which value is white: 0..255 stored in it would silently
    decode near-black if read as 16-bit, and black if read as 32-bit."""
    with pytest.raises(UserError) as err:
        buffer = io.BytesIO()
        Image.fromarray(RAMP.astype(np.int32)).save(buffer, "TIFF")  # mode I, 32 bits per sample
        decode_image(buffer.getvalue(), "ramp.tif", 32)
    assert "32-bit" in _one_line(err, "ramp.tif: ") and "white level" in str(err.value)


@pytest.mark.parametrize("maxval", [255 * 4 + 3, 4095, 65535])
def test_sixteen_bit_pgm_is_scaled_by_its_declared_maximum(maxval):
    """PGM declares its white (maxval) in the header; a ramp to it decodes as a full 8-bit ramp."""
    values = np.linspace(0, maxval, 32 * 32).round().astype(">u2")
    decoded = decode_image(f"P5\n32 32\n{maxval}\n".encode() + values.tobytes(), "ramp.pgm", 32)
    assert decoded.min() == 0 and decoded.max() == 255 and abs(decoded.mean() - 127.5) < 1.5


@pytest.mark.parametrize("dtype", ["<u2", ">u2"], ids=["I;16", "I;16B"])
def test_sixteen_bit_tiff_in_either_byte_order_is_scaled_from_65535(dtype):
    values = (RAMP * 257).round().astype(dtype)
    buffer = io.BytesIO()
    Image.fromarray(values).save(buffer, "TIFF")
    decoded = decode_image(buffer.getvalue(), "ramp.tif", 32)
    assert decoded.min() == 0 and decoded.max() == 255 and abs(decoded.mean() - 127.5) < 1.5


# --- names that are not text ---------------------------------------------------------------------

def test_a_tar_member_name_that_is_not_utf8_is_refused_at_download(tmp_path):
    arrays = make_arrays(per_class_train=2, per_class_test=1)
    tree = write_image_tree(tmp_path / "tree", arrays)
    archive = tmp_path / "tree.tar.gz"
    with tarfile.open(archive, "w:gz", format=tarfile.GNU_FORMAT, encoding="latin-1") as tar:
        for path in sorted(tree.rglob("*.png")):
            name = path.relative_to(tree).as_posix().replace("/cat/", "/caf\u00e9/")  # é as one latin-1 byte
            tar.add(path, arcname=name)
    with pytest.raises(UserError) as err:
        prepare(str(archive), 32, NO_SUBSET, 0, tmp_path / "raw")
    assert "caf\\xe9" in _one_line(err, f"{archive}: the name '")


def test_a_folder_name_that_is_not_utf8_is_refused_at_download(tmp_path):
    tree = write_image_tree(tmp_path / "tree", make_arrays(per_class_train=2, per_class_test=1))
    os.rename(bytes(tree / "train" / "cat"), bytes(tree / "train") + b"/\xff\xfecat")
    with pytest.raises(UserError) as err:
        prepare(str(tree), 32, NO_SUBSET, 0, tmp_path / "raw")
    assert "\\xff\\xfecat" in _one_line(err, f"{tree}: the name '")


# --- Ctrl-C during a stage's imports ---------------------------------------------------------------

def _importing_torch(pid: int) -> bool:
    """Whether the process has begun loading torch's library: mid-imports, before the stage's work."""
    return "libtorch" in Path(f"/proc/{pid}/maps").read_text()


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="reads /proc")
def test_ctrl_c_during_a_stage_s_imports_ends_as_it_does_later(tmp_path):
    """train.py imports torch for seconds; interrupted then, it prints the same one line and
    exit status as when interrupted while training, with nothing written."""
    project = copy_project(tmp_path / "project")
    process = subprocess.Popen([sys.executable, "stages/train.py"], cwd=project, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while process.poll() is None and not _importing_torch(process.pid) and time.monotonic() < deadline:
        time.sleep(0.002)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == INTERRUPTED and stderr.strip() == INTERRUPTED_LINE, stderr
    assert not (project / "models").exists() and not (project / "metrics").exists()
