"""A file one stage wrote and another reads, missing, cut short or garbled, stops the reading
stage with one line naming the file and the stage to rerun; a write that fails (a full disk)
keeps the previous output and leaves no temp file."""
from __future__ import annotations

import errno
import json
import subprocess
import sys

import pytest

from cifarlab.core import io
from cifarlab.core.errors import UserError
from conftest import project_on_tree
from test_pipeline import STAGES

pytestmark = pytest.mark.slow
# each file an earlier stage writes: the stage that writes it and the stages that read it
READERS = {
    "data/prepared.npz": ("download", ["stats", "plan", "train", "evaluate", "misclassify", "gradcam"]),
    "data/stats.json": ("stats", ["train"]),
    "plan/choice.json": ("plan", ["train"]),
    "models/model.pt": ("train", ["export", "evaluate", "gradcam", "report"]),
    "eval/predictions.csv": ("evaluate", ["misclassify"]),
    "models/calibration.json": ("evaluate", ["export"]),
    "eval/misclassified.csv": ("misclassify", ["gradcam"]),
    "metrics/train.json": ("train", ["report"]),
    "metrics/evaluate.json": ("evaluate", ["report"]),
    "eval/classes.json": ("evaluate", ["report"]),
    "metrics/gradcam.json": ("gradcam", ["report"]),
}


def _stage(project, name) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, f"stages/{name}.py"], cwd=project, capture_output=True, text=True)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A project copy on a small tree after every stage has run once."""
    project = project_on_tree(tmp_path_factory.mktemp("damaged"), 10, 4, **{
        "data.val": 6, "train.epochs": 1, "train.batch_size": 8, "misclassify.count": 3,
        "gradcam.faithfulness.images": 4, "gradcam.faithfulness.fractions": [0.5]})
    for name in STAGES:
        result = _stage(project, name)
        assert result.returncode == 0, result.stderr
    return project


def _cut(data: bytes) -> bytes:
    """The first half, ending mid-line for text."""
    half = len(data) // 2
    return data[:half - 1] if data[half - 1:half] == b"\n" else data[:half]


def _garble(data: bytes) -> bytes:
    middle = len(data) // 2
    return data[:middle] + bytes(b ^ 0xFF for b in data[middle:middle + 64]) + data[middle + 64:]


# flipped bytes in a text file can still be valid text, so text files are cut short, not garbled
CASES = [(name, damage) for name in READERS
         for damage in ("missing", "cut short", *(("garbled",) if name.endswith((".npz", ".pt")) else ()))]


def _snapshot(project) -> dict[str, int]:
    """Every file in the project by path, with a hash of its bytes."""
    return {str(p.relative_to(project)): hash(p.read_bytes()) for p in sorted(project.rglob("*"))
            if p.is_file() and ".git" not in p.parts}


@pytest.mark.parametrize("name, damage", CASES)
def test_each_reader_of_a_damaged_file_says_which_stage_to_rerun_and_leaves_nothing(finished, name, damage):
    writer, readers = READERS[name]
    path = finished / name
    original = path.read_bytes()
    before = _snapshot(finished)
    try:
        if damage == "missing":
            path.unlink()
        else:
            path.write_bytes(_cut(original) if damage == "cut short" else _garble(original))
        for reader in readers:
            result = _stage(finished, reader)
            errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
            assert result.returncode == 2 and "Traceback" not in result.stderr, (reader, result.stderr[-2000:])
            assert len(errors) == 1 and name in errors[0] and f"dvc repro {writer}" in errors[0], (reader, errors)
    finally:
        path.write_bytes(original)
    after = _snapshot(finished)
    assert after == before, {key for key in before.keys() | after.keys() if before.get(key) != after.get(key)}


def test_a_full_disk_keeps_the_previous_file_and_leaves_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "metrics.json"
    io.write_json(target, {"accuracy": 1.0})

    real_fsync = io.os.fsync

    def full_disk(fd):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(io.os, "fsync", full_disk)
    with pytest.raises(UserError, match=r"metrics.json: could not write it \(No space left on device\)"):
        io.write_json(target, {"accuracy": 2.0})
    monkeypatch.setattr(io.os, "fsync", real_fsync)
    assert json.loads(target.read_text()) == {"accuracy": 1.0}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


def _outputs(project, stage: str) -> dict[str, int]:
    """The stage's declared outputs (files, and the files of folders), by path, with a hash of their bytes."""
    import yaml
    outs = yaml.safe_load((project / "dvc.yaml").read_text())["stages"][stage]["outs"]
    paths = [project / (out if isinstance(out, str) else next(iter(out))) for out in outs]
    files = [f for path in paths for f in ([path] if path.is_file() else sorted(path.rglob("*"))) if f.is_file()]
    return {str(f.relative_to(project)): hash(f.read_bytes()) for f in files}


def _temps(project) -> list:
    return [p for p in project.rglob(".*.tmp") if ".dvc" not in p.parts]


OLD = b"\n(an earlier run's)"  # appended to a stage's outputs, so what a run replaced can be told apart


@pytest.mark.parametrize("stage", ["export", "report"])
def test_sigterm_at_any_moment_of_export_or_report_leaves_its_outputs_all_old_or_all_new(finished, stage):
    """Stopped from the imports to the writes at the end, the stage replaces all its outputs or
    none (130: none); a SIGTERM as Python exits, after the writes, ends it as the signal does."""
    import signal
    import time
    for delay in (0.5, 2.0, 3.5, 5.0, 6.5):
        for name in _outputs(finished, stage):
            (finished / name).write_bytes((finished / name).read_bytes() + OLD)
        run = subprocess.Popen([sys.executable, f"stages/{stage}.py"], cwd=finished, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
        time.sleep(delay)
        run.send_signal(signal.SIGTERM)
        _, stderr = run.communicate()
        assert run.returncode in (0, 130, -signal.SIGTERM) and "Traceback" not in stderr, (delay, stderr[-2000:])
        old = {name: (finished / name).read_bytes().endswith(OLD) for name in _outputs(finished, stage)}
        assert len(set(old.values())) == 1, (delay, run.returncode, old)  # all old, or all new
        assert old.popitem()[1] == (run.returncode == 130), (delay, run.returncode)
        assert not _temps(finished), delay
    assert _stage(finished, stage).returncode == 0  # the outputs as the stage writes them, for the other tests


@pytest.fixture
def small_disk_at(finished):
    """Mount a 16 KiB filesystem over a folder of the finished project (a disk that fills mid-write)."""
    mounted = []

    def mount(relative: str):
        folder = finished / relative
        if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(folder)],
                          capture_output=True).returncode:
            pytest.skip("cannot mount a tmpfs here (not root)")
        mounted.append(folder)
        return folder
    yield mount
    for folder in mounted:
        subprocess.run(["umount", str(folder)], check=True)


@pytest.mark.parametrize("stage, folder", [("report", "reports"), ("robustness", "plots/4-robustness")])
def test_a_full_disk_under_a_stages_folder_is_one_line_and_nothing_partial(finished, small_disk_at, stage, folder):
    before = {path: digest for path, digest in _outputs(finished, stage).items() if not path.startswith(folder)}
    full = small_disk_at(folder)
    result = _stage(finished, stage)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode in (1, 2) and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert len(errors) == 1 and "No space left on device" in errors[0] and folder in errors[0], errors
    assert not list(full.iterdir())  # nothing half-written on the full disk
    after = {path: digest for path, digest in _outputs(finished, stage).items() if not path.startswith(folder)}
    assert after == before and not _temps(finished)  # its other outputs kept, all together
