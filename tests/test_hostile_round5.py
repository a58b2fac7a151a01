"""What users' photo folders and model files hold, round 5: special files, files far too large to
be photos, work bombs after decoding, names no terminal or CSV shows plainly, and a model file of
the wrong kind. Each is one line naming the file, the rest of the folder is still predicted, and
nothing blocks, reads without end or fills the memory."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cifarlab.user_files import shown_name
from test_use_the_model import _checkpoint

MEMORY_HEADROOM = 2 << 30  # predict may use this much beyond what its imports took


def _predict_capped(cwd: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """predict in a subprocess whose address space is capped at its imports' size plus
    MEMORY_HEADROOM, and killed (failing the test) if it blocks."""
    code = textwrap.dedent(f"""
        import resource, sys
        from cifarlab.predict import main
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
    assert line.startswith("error: model.onnx: an ONNX file") and "onnxruntime" in line
