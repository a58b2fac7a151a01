"""What users' photo folders and model files hold, round 5: special files, files far too large to
be photos, work bombs after decoding, every mode Pillow reads, files that are not images, names
no terminal or CSV shows plainly, a model file of the wrong kind, and thousands of photos. Each bad
file is one line naming it, the rest of the folder is still predicted, and nothing blocks, reads
without end or fills the memory."""
from __future__ import annotations

import io
import os
import socket
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from cifarlab.commands.user_files import shown_name
from cifarlab.download.imagefolder import decode_image
from test_use_the_model import _checkpoint

MEMORY_HEADROOM = 2 << 30  # predict may use this much beyond what its imports took


def _predict_capped(cwd: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """predict in a subprocess whose address space is capped at its imports' size plus
    MEMORY_HEADROOM, and killed (failing the test) if it blocks."""
    code = textwrap.dedent(f"""
        import resource, sys
        from cifarlab.commands.predict import main
        with open('/proc/self/statm') as f:
            used = int(f.read().split()[0]) * resource.getpagesize()
        resource.setrlimit(resource.RLIMIT_AS, (used + {MEMORY_HEADROOM}, used + {MEMORY_HEADROOM}))
        sys.exit(main(sys.argv[1:]))
    """)
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, capture_output=True, timeout=timeout)


def _photo(path: Path, seed: int = 0, size: tuple[int, int] = (40, 30)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (*size[::-1], 3), dtype=np.uint8)).save(path)


def _errors(done: subprocess.CompletedProcess) -> list[str]:
    return [line for line in done.stderr.decode().splitlines() if line.startswith("error: ")]


@pytest.fixture
def project(tmp_path) -> Path:
    _checkpoint(tmp_path / "models" / "model.pt")
    _photo(tmp_path / "photos" / "good.png")
    return tmp_path


def test_special_files_are_one_line_each_and_never_block(project):
    """A FIFO (reading it would wait for a writer for ever), a socket and a link to /dev/zero
    (reading it never ends), in a folder and named on the command line."""
    os.mkfifo(project / "photos" / "pipe.jpg")
    os.mkfifo(project / "named-pipe.png")
    (project / "photos" / "zeros.jpg").symlink_to("/dev/zero")
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(project / "photos" / "socket.png"))
    try:
        done = _predict_capped(project, "photos", "named-pipe.png")
    finally:
        server.close()
    assert done.returncode == 1, done.stderr
    assert sorted(_errors(done)) == [
        "error: named-pipe.png: not an image file but a FIFO; skipped",
        "error: photos/pipe.jpg: not an image file but a FIFO; skipped",
        "error: photos/socket.png: not an image file but a socket; skipped",
        "error: photos/zeros.jpg: not an image file but a character device; skipped"]
    assert [line.split(":")[0] for line in done.stdout.decode().splitlines()] == ["photos/good.png"]


def test_a_file_far_too_large_to_be_a_photo_is_refused_by_its_size_unread(project):
    """A 20 GiB "video" (sparse: it costs no disk) in the folder, under a memory cap far below it."""
    with open(project / "photos" / "holiday.jpg", "wb") as handle:
        handle.truncate(20 << 30)
    done = _predict_capped(project, "photos")
    assert done.returncode == 1, done.stderr
    assert _errors(done) == ["error: photos/holiday.jpg: 20.0 GiB, too large to be a photo (at most 1 GiB); "
                             "skipped unread"]
    assert done.stdout.decode().startswith("photos/good.png: ")


def test_a_strip_a_million_pixels_long_costs_what_a_square_does(project):
    """Decoding is allowed (a million pixels), and the centre-square rule crops before it resizes,
    so no step allocates by the long side squared: predicted under the memory cap, quickly."""
    Image.fromarray(np.full((1, 1_000_000, 3), 200, dtype=np.uint8)).save(project / "photos" / "strip.png")
    Image.fromarray(np.full((1_000_000, 1, 3), 90, dtype=np.uint8)).save(project / "photos" / "tower.png")
    done = _predict_capped(project, "photos", timeout=60)
    assert done.returncode == 0, done.stderr
    assert sorted(line.split(":")[0] for line in done.stdout.decode().splitlines()) == [
        "photos/good.png", "photos/strip.png", "photos/tower.png"]


def test_every_file_name_shows_unambiguously_on_screen_and_reads_back_from_the_csv(project):
    names = [b"comma, and \"quotes\".png", b"new\nline.png", b"caf\xe9 latin-1.png", b"it's.png", b"back\\slash.png",
             b"caf\xc3\xa9.png"]
    for seed, name in enumerate(names):
        _photo(project / "photos" / os.fsdecode(name), seed)
    done = _predict_capped(project, "photos", "--csv", "out.csv")
    assert done.returncode == 0, done.stderr
    expected = sorted(shown_name(Path("photos") / os.fsdecode(name)) for name in names) + ["photos/good.png"]
    printed = [line.rsplit(": ", 1)[0] for line in done.stdout.decode().splitlines()]
    assert sorted(printed) == sorted(expected) and len(set(printed)) == len(printed) == 7
    assert "'photos/new\\nline.png'" in printed and "'photos/caf\\xe9 latin-1.png'" in printed
    assert "photos/café.png" in printed and 'photos/comma, and "quotes".png' in printed  # plain names stay plain
    table = pd.read_csv(project / "out.csv")
    assert sorted(table["file"]) == sorted(expected)


def test_an_onnx_file_given_as_the_model_is_one_line_saying_what_runs_it(project, tmp_path):
    (project / "model.onnx").write_bytes(b"\x08\x07\x12\x07pytorch")
    done = _predict_capped(project, "photos", "--model", "model.onnx")
    assert done.returncode == 2
    (line,) = done.stderr.decode().strip().splitlines()
    assert line.startswith("error: model.onnx: an ONNX model") and "onnxruntime" in line


def _encoded(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


RED, BLUE = Image.new("RGB", (40, 30), (250, 10, 10)), Image.new("RGB", (40, 30), (10, 10, 250))
MODES = {  # what phones and editors write: each predicted, animated and multi-page ones from their first frame
    "animated.gif": _encoded(RED, "GIF", save_all=True, append_images=[BLUE], duration=100, loop=0),
    "animated.webp": _encoded(RED, "WEBP", save_all=True, append_images=[BLUE], duration=100, lossless=True),
    "pages.tif": _encoded(RED, "TIFF", save_all=True, append_images=[BLUE]),
    "cmyk.jpg": _encoded(RED.convert("CMYK"), "JPEG", quality=95),
    "palette-transparent.png": _encoded(RED.convert("P"), "PNG", transparency=0),
    "grey-alpha.png": _encoded(RED.convert("LA"), "PNG"),
    "deep16.tif": _encoded(Image.fromarray(np.full((30, 40), 40000, dtype=np.uint16)), "TIFF"),
    "float.tif": _encoded(Image.fromarray(np.full((30, 40), 0.5, dtype=np.float32)), "TIFF"),
}


def test_every_pillow_mode_a_phone_or_editor_writes_is_predicted(project):
    for name, data in MODES.items():
        (project / "photos" / name).write_bytes(data)
    done = _predict_capped(project, "photos", "--csv", "out.csv")
    assert done.returncode == 0 and not _errors(done), done.stderr
    assert sorted(pd.read_csv(project / "out.csv")["file"]) == sorted(f"photos/{name}" for name in [*MODES, "good.png"])


@pytest.mark.parametrize("name", ["animated.gif", "animated.webp", "pages.tif"])
def test_an_animated_or_multi_page_image_is_its_first_frame(name):
    assert decode_image(MODES[name], name, 32)[16, 16].tolist() == [250, 10, 10]  # red first, then blue


@pytest.mark.parametrize(("name", "value"), [("cmyk.jpg", [250, 10, 10]), ("grey-alpha.png", [82, 82, 82]),
                                             ("deep16.tif", [156, 156, 156]), ("float.tif", [128, 128, 128])])
def test_each_mode_becomes_the_rgb_it_shows(name, value):
    """CMYK converted back, grey repeated in three channels, 16-bit and float scaled to 8 bits."""
    assert np.abs(decode_image(MODES[name], name, 32)[16, 16].astype(int) - value).max() <= 2


def _damaged_png(good: bytes, chunk: bytes) -> bytes:
    """`good` with one byte of `chunk`'s checksum flipped: the image data itself intact."""
    at = 8
    while good[at + 4:at + 8] != chunk:
        at += 12 + struct.unpack(">I", good[at:at + 4])[0]
    damaged = bytearray(good)
    damaged[at + 8 + struct.unpack(">I", good[at:at + 4])[0]] ^= 0xFF
    return bytes(damaged)


def test_what_is_not_an_image_is_one_line_each_and_the_rest_is_predicted(project):
    photos = project / "photos"
    good = (photos / "good.png").read_bytes()
    (photos / "empty.jpg").write_bytes(b"")
    (photos / "drawing.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg" width="9" height="9"/>')
    (photos / "scan.pdf").write_bytes(b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n")
    (photos / "bad-header-checksum.png").write_bytes(_damaged_png(good, b"IHDR"))
    (photos / "bad-data-checksum.png").write_bytes(_damaged_png(good, b"IDAT"))
    (photos / "holiday.jpg").mkdir()  # an empty folder named like an image
    _photo(photos / "album.jpg" / "inside.png", seed=1)  # a folder named like an image, with a photo: walked
    done = _predict_capped(project, "photos")
    assert done.returncode == 1, done.stderr
    assert sorted(_errors(done)) == [
        "error: photos/bad-data-checksum.png: not a readable image (SyntaxError: broken PNG file (bad header "
        "checksum in b'IDAT'))",
        "error: photos/bad-header-checksum.png: a damaged PNG file (its header cannot be read)",
        "error: photos/drawing.svg: not a readable image (not in a format Pillow knows; SVG, PDF and the like: "
        "export them as PNG or JPEG)",
        "error: photos/empty.jpg: an empty file (0 bytes), not an image",
        "error: photos/holiday.jpg: not an image file but an empty folder named like one; skipped",
        "error: photos/scan.pdf: not a readable image (not in a format Pillow knows; SVG, PDF and the like: "
        "export them as PNG or JPEG)"]
    assert [line.split(":")[0] for line in done.stdout.decode().splitlines()] == ["photos/album.jpg/inside.png",
                                                                                   "photos/good.png"]


def test_thousands_of_images_are_read_a_batch_at_a_time(project, monkeypatch):
    """3,000 photos (hard links to one) for a 128-pixel model: all their inputs at once would take
    147 MB; read and predicted a batch at a time they stay far below (the model itself is
    replaced by a uniform guess, since its cost is not what is measured), and every row arrives."""
    import tracemalloc

    from cifarlab.commands import predict
    from cifarlab.models.checkpoint import save_checkpoint
    from cifarlab.models.registry import build_model
    from test_use_the_model import STATS

    save_checkpoint(project / "big.pt", "tiny", build_model("tiny", 3).state_dict(), ["bird", "cat", "ship"], STATS,
                    0, {}, "fp32", 128)
    many = project / "many"
    many.mkdir()
    _photo(many / "0000.png", size=(160, 128))
    for number in range(1, 3000):
        os.link(many / "0000.png", many / f"{number:04d}.png")
    monkeypatch.setattr(predict, "probabilities", lambda model, images, *_: torch.full((len(images), 3), 1 / 3))
    monkeypatch.chdir(project)
    tracemalloc.start()
    try:
        assert predict.main(["many", "--model", "big.pt", "--csv", "out.csv"]) == 0
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(pd.read_csv(project / "out.csv")) == 3000
    assert peak < 60 << 20, f"{peak / 2**20:.0f} MB"
