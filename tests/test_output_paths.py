"""Every command checks where its results go before it does any work: an output under a file, or
a file where a folder is wanted, is one `error:` line and exit status 2, and nothing ran."""
from __future__ import annotations

import subprocess
import sys

import pytest
from PIL import Image

from test_use_the_model import _checkpoint

CASES = [
    ("predict", ["photo.png", "--csv", "blocker/table.csv"], "--csv blocker/table.csv:"),
    ("predict", ["photo.png", "--csv", "photos"], "--csv photos: is a folder; name a file"),
    ("predict", ["photo.png", "--explain", "blocker/maps"], "--explain blocker/maps:"),
    ("predict", ["photo.png", "--explain", "blocker"], "--explain blocker: is a file; name a folder"),
    ("score", ["photos", "--out", "blocker/scores"], "--out blocker/scores:"),
    ("conf", ["--out", "blocker/params.yaml"], "--out blocker/params.yaml:"),
    ("bench", ["--out", "blocker/bench.json"], "--out blocker/bench.json:"),
]


@pytest.mark.parametrize("command, args, says", CASES, ids=[f"{c}-{a[-1]}" for c, a, _ in CASES])
def test_an_output_that_cannot_be_made_stops_the_command_before_its_work(tmp_path, command, args, says):
    _checkpoint(tmp_path / "models" / "model.pt")
    Image.new("RGB", (32, 32)).save(tmp_path / "photo.png")
    (tmp_path / "photos" / "cat").mkdir(parents=True)
    Image.new("RGB", (32, 32)).save(tmp_path / "photos" / "cat" / "1.png")
    (tmp_path / "blocker").write_text("a file where a folder would have to be")
    done = subprocess.run([sys.executable, "-m", f"cifarlab.{command}", *args], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 2, done.stdout + done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and says in errors[0] and "Traceback" not in done.stderr, done.stderr
    if "blocker/" in args[-1]:
        assert "blocker is a file, so nothing can be written under it" in errors[0]
    assert done.stdout == ""  # nothing was predicted, scored, composed or timed
