"""Killing the train stage mid-run (SIGINT, SIGTERM) leaves a consistent state, no temp files,
and a rerun resumes to exactly the result of an uninterrupted run. Same params, same metrics."""
from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import clean_train_outputs, project_on_tree, train_results

pytestmark = pytest.mark.slow
TRAIN = ["stages/train.py"]


@pytest.fixture(scope="module")
def prepared_project(tmp_path_factory):
    """A project copy with download, stats and plan done; train: tiny, 4 epochs, batch 8."""
    project = project_on_tree(tmp_path_factory.mktemp("interrupt"), 40, 6, **{
        "data.val": 12, "train.epochs": 4, "train.batch_size": 8, "train.scheduler.onecycle.peak_epoch": 1,
        "train.scheduler.onecycle.max_lr": "auto",  # the LR range test must resume too
        "train.lr_finder.num_iter": 10})
    for stage in ("stages/download.py", "stages/stats.py", "stages/plan.py"):
        subprocess.run([sys.executable, stage], cwd=project, check=True, capture_output=True)
    return project


def _default_sigint() -> None:
    """A shell's background job inherits SIGINT ignored, and Python then never raises
    KeyboardInterrupt; a user's Ctrl-C is what this test imitates."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _train(project) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *TRAIN], cwd=project, capture_output=True, text=True)


@pytest.fixture(scope="module")
def uninterrupted(prepared_project):
    clean_train_outputs(prepared_project)
    assert _train(prepared_project).returncode == 0
    first = train_results(prepared_project)
    clean_train_outputs(prepared_project)
    assert _train(prepared_project).returncode == 0
    return first, train_results(prepared_project)


def test_same_params_and_seed_give_identical_metrics_across_runs(uninterrupted):
    first, second = uninterrupted
    assert first == second


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_killed_mid_run_then_rerun_equals_uninterrupted(prepared_project, uninterrupted, sig):
    project = prepared_project
    clean_train_outputs(project)
    state = project / ".cache" / "train_state.pt"
    process = subprocess.Popen([sys.executable, *TRAIN], cwd=project, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, preexec_fn=_default_sigint)
    deadline = time.monotonic() + 120
    while not state.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert process.poll() is None, "training finished before it could be interrupted"
    time.sleep(0.3)  # into the next epoch
    process.send_signal(sig)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr
    assert not list(project.rglob("*.tmp")), "a temp file was left behind"
    saved = torch.load(state, weights_only=True)
    assert 1 <= saved["epoch"] < 4 and len(saved["progress"]["history"]) == saved["epoch"]

    rerun = _train(project)
    assert rerun.returncode == 0, rerun.stderr
    assert f"resuming after epoch {saved['epoch']} of 4" in rerun.stdout
    assert train_results(project) == uninterrupted[0]
    assert not state.exists()
