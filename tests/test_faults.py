"""Faults that the hostile rounds found the pipeline withstanding, kept so: a 2-class grayscale
dataset of odd image sizes with 3 test images runs through every stage; `dvc repro` killed
outright (SIGKILL to its whole process group, as a power cut or the out-of-memory killer would)
at a random moment inside each stage in turn, then run once more, leaves the project up to date
with every output whole, no temp file and no stale resume state."""
from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from test_pipeline import STAGES, _env, declared_outputs, make_project, up_to_date

pytestmark = pytest.mark.slow
SEED = 7  # the kill moments' draws; a failure names the stage and moment


def _grey_tree(root: Path) -> Path:
    """bird: 5 training and 2 test images, cat: 4 and 1, grayscale, each of another odd size."""
    rng = np.random.default_rng(0)
    sizes = [(37, 29), (29, 37), (41, 33), (23, 31), (35, 35)]
    for split, counts in (("train", {"bird": 5, "cat": 4}), ("test", {"bird": 2, "cat": 1})):
        for label, (name, count) in enumerate(counts.items()):
            for index in range(count):
                width, height = sizes[(index + label) % len(sizes)]
                pixels = rng.integers(0, 90, (height, width)) + 120 * label  # cat: brighter
                folder = root / split / name
                folder.mkdir(parents=True, exist_ok=True)
                Image.fromarray(pixels.astype(np.uint8), mode="L").save(folder / f"{index}.png")
    return root


# DVC rewrites these two files in place, so a kill can leave them cut short: what DVC then says,
# and the file docs/troubleshooting.md says to delete (no run is under way, and DVC rebuilds both)
DVC_DAMAGE = {"Unable to read RWLock-file '.dvc/tmp/rwlock'": ".dvc/tmp/rwlock",
              "'./dvc.lock' validation failed": "dvc.lock"}


def _repro(project: Path, *args: str, kill_after: float | None = None) -> tuple[list[tuple[str, float]], str]:
    """`dvc repro ARGS`: each stage that started and when, and what DVC printed. With `kill_after`,
    it and its stage are killed outright that many seconds after the first stage starts."""
    run = subprocess.Popen([sys.executable, "-m", "dvc", "repro", *args], cwd=project, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, env=_env(), start_new_session=True)
    started, printed = [], []
    for line in run.stdout:
        printed.append(line)
        started += [(stage, time.monotonic()) for stage in re.findall(r"Running stage '(\w+)'", line)]
        if started and kill_after is not None:
            time.sleep(kill_after)
            os.killpg(run.pid, signal.SIGKILL)
            break
    run.wait()
    return started + [("(end)", time.monotonic())], "".join(printed)


def _recovered(project: Path, killed: list) -> None:
    """`dvc repro` after a kill, as a user runs it: if the kill cut one of DVC's own files short,
    the fix docs/troubleshooting.md gives first."""
    for _ in range(len(DVC_DAMAGE) + 1):
        run = subprocess.run([sys.executable, "-m", "dvc", "repro"], cwd=project, capture_output=True, text=True,
                             env=_env())
        damaged = [path for said, path in DVC_DAMAGE.items() if said in run.stdout + run.stderr]
        if run.returncode == 0 or not damaged:
            assert run.returncode == 0, (killed, run.stdout[-3000:], run.stderr[-3000:])
            return
        (project / damaged[0]).unlink()
        killed.append(f"{damaged[0]} cut short by the kill: deleted")
    raise AssertionError(killed)


def test_grayscale_odd_sizes_and_a_kill_inside_every_stage_end_up_to_date_with_nothing_left_over(tmp_path):
    tree = _grey_tree(tmp_path / "tree")
    project = make_project(tmp_path / "project", str(tree), **{"data.val": 2, "misclassify.count": 1,
                                                                "train.batch_size": 4})
    started, log = _repro(project)
    assert [stage for stage, _ in started[:-1]] == STAGES and up_to_date(project), log  # all ten run on these
    seconds = {stage: end - begin for (stage, begin), (_, end) in zip(started, started[1:])}
    draws, killed = random.Random(SEED), []
    for stage in STAGES:  # each forced to run alone, killed at a moment inside it, then recovered
        moment = draws.uniform(0.1, 0.9) * seconds[stage]
        _repro(project, "--force", "--single-item", stage, kill_after=moment)
        killed.append((stage, round(moment, 2)))
        _recovered(project, killed)
        left = [path for path in project.rglob("*.tmp") if ".dvc" not in path.relative_to(project).parts]
        assert not left, (left, killed)
    assert up_to_date(project), killed
    for path in declared_outputs(project):
        files = [path] if path.is_file() else list(path.glob("*"))
        assert files and all(f.stat().st_size > 0 for f in files), (path, killed)
    assert not (project / ".cache" / "train_state.pt").exists(), killed
    evaluation = json.loads((project / "metrics" / "evaluate.json").read_text())
    assert evaluation["num_test_images"] == 3, evaluation
