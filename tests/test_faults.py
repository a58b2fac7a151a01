"""Faults that the hostile rounds found the pipeline withstanding, kept so: a 2-class grayscale
dataset of odd image sizes with 3 test images runs through every stage; `dvc repro` killed
outright (SIGKILL to its whole process group, as a power cut or the out-of-memory killer would)
at a random moment inside each stage in turn, then run once more, leaves the project up to date
with every output whole, no temp file and no stale resume state."""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from test_pipeline import ALWAYS, STAGES, _env, declared_outputs, dvc, make_project, ran, up_to_date

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


# DVC rewrites these two files in place, so a kill can leave them cut short; what DVC then says,
# and the file docs/troubleshooting.md says to delete (no run is under way, and DVC rebuilds both)
DVC_DAMAGE = {"Unable to read RWLock-file '.dvc/tmp/rwlock'": ".dvc/tmp/rwlock",
              "'./dvc.lock' validation failed": "dvc.lock"}


def _killed_inside(project: Path, targets: list[str], delay: float) -> str | None:
    """Start `dvc repro` and kill it and its stage `delay` seconds after the first of `targets`
    starts; the stage it was, None when the run ended with none of them starting, or the DVC_DAMAGE
    file that an earlier kill left cut short."""
    run = subprocess.Popen([sys.executable, "-m", "dvc", "repro"], cwd=project, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, env=_env(), start_new_session=True)
    printed = []
    for line in run.stdout:
        printed.append(line)
        started = [stage for stage in targets if f"Running stage '{stage}'" in line]
        if started:
            time.sleep(delay)
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()
            return started[0]
    damaged = [path for said, path in DVC_DAMAGE.items() if said in "".join(printed)]
    if run.wait() and damaged:
        return damaged[0]
    assert run.returncode == 0, "".join(printed)[-3000:]
    return None


def test_grayscale_odd_sizes_and_a_kill_inside_every_stage_end_up_to_date_with_nothing_left_over(tmp_path):
    tree = _grey_tree(tmp_path / "tree")
    project = make_project(tmp_path / "project", str(tree), **{"data.val": 2, "misclassify.count": 1,
                                                                "train.batch_size": 4})
    draws, targets, killed = random.Random(SEED), list(STAGES), []
    while targets:
        delay = draws.uniform(0.2, 2.5)
        stage = _killed_inside(project, targets, delay)
        if stage is None:
            break
        if stage in DVC_DAMAGE.values():  # the fix docs/troubleshooting.md gives
            (project / stage).unlink()
            killed.append((f"{stage} cut short by the kill: deleted", 0))
            continue
        killed.append((stage, round(delay, 2)))
        targets.remove(stage)
    assert not targets, f"stages never seen running: {targets}; killed: {killed}"
    log = dvc("repro", cwd=project)
    assert set(ran(log)) >= set(ALWAYS), log
    assert up_to_date(project), killed
    for path in declared_outputs(project):
        files = [path] if path.is_file() else list(path.glob("*"))
        assert files and all(f.stat().st_size > 0 for f in files), (path, killed)
    left = [path for path in project.rglob("*.tmp") if ".dvc" not in path.relative_to(project).parts]
    assert not left, (left, killed)
    assert not (project / ".cache" / "train_state.pt").exists(), killed
    evaluation = json.loads((project / "metrics" / "evaluate.json").read_text())
    assert evaluation["num_test_images"] == 3, evaluation
