"""A queue worker killed mid-training (a closed lid, the out-of-memory killer): the experiment is
never shown as finished with its partial metrics, `cifarlab requeue` puts it back and
stops the stage the kill left training, the
next `dvc queue start` reruns it to the end, and the other queued experiment runs once, untouched."""
from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import psutil

from test_pipeline import _env, dvc, make_arrays, make_project, sh, write_image_tree

EPOCHS = 40  # long enough that the kill lands mid-training


def _start_queue(project: Path) -> None:
    """`dvc queue start -j 1`: it returns once it has spawned the worker, which runs on in the
    background in a process group of its own."""
    subprocess.run([sys.executable, "-m", "dvc", "queue", "start", "-j", "1"], cwd=project, env=_env(), check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _kill_worker_but_not_its_stage(project: Path) -> psutil.Process:
    """SIGKILL to the worker and DVC's processes under it, nothing getting to clean up; the stage
    it was running survives, orphaned, as a process the killer missed would. Returns that stage."""
    pid = int((project / ".dvc" / "tmp" / "exps" / "celery" / "dvc-exp-worker-1.pid").read_text())
    group = [process for process in psutil.process_iter() if _in_group(process, os.getpgid(pid))]
    running_a_stage = [process for process in group if any("stages/" in part for part in process.cmdline())]
    # DVC runs a stage's cmd through `$SHELL -c` (/bin/sh without SHELL); dash keeps itself as the
    # python's parent, bash execs: the stage is the process whose children run no stage
    stages = [process for process in running_a_stage if not set(process.children()) & set(running_a_stage)]
    assert len(stages) == 1, running_a_stage
    for process in group:
        if process not in stages:
            process.kill()
    psutil.wait_procs([process for process in group if process not in stages], timeout=30)
    return stages[0]


def _in_group(process: psutil.Process, group: int) -> bool:
    try:
        return os.getpgid(process.pid) == group
    except ProcessLookupError:
        return False


def _ended(process: psutil.Process) -> bool:
    """Gone, or a zombie nobody reaps (its parent was killed)."""
    try:
        return process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _wait_for(condition, what: str, seconds: float = 600) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def _states(project: Path) -> dict[str, str]:
    shown = pd.read_csv(io.StringIO(dvc("exp", "show", "--csv", cwd=project)))
    runs = shown[shown["typ"] != "baseline"]
    return dict(zip(runs["Experiment"], runs["State"]))


def _queue_idle(project: Path) -> bool:
    status = dvc("queue", "status", cwd=project)
    return " Queued" not in status and " Running" not in status


def test_a_killed_worker_s_experiment_is_queued_again_and_reruns_cleanly(tmp_path):
    tree = write_image_tree(tmp_path / "tree", make_arrays(per_class_train=12, per_class_test=4))
    project = make_project(tmp_path / "project", str(tree))
    dvc("exp", "run", "--queue", "-n", "victim", "-S", f"train.epochs={EPOCHS}", cwd=project)
    dvc("exp", "run", "--queue", "-n", "bystander", "-S", "train.seed=2", cwd=project)
    _start_queue(project)
    copies = project / ".dvc" / "tmp" / "exps"
    _wait_for(lambda: any(copies.glob("tmp*/.cache/train_state.pt")), "the first epoch of the victim")
    stage = _kill_worker_but_not_its_stage(project)

    states = _states(project)
    assert states["victim"] != "Success" and states["bystander"] == "Queued", states  # no half run shown as done
    printed = sh(sys.executable, "-m", "cifarlab.requeue", cwd=project)
    assert "queued again: victim" in printed and "dvc queue start" in printed, printed
    assert _states(project)["victim"] == "Queued"
    assert not list(copies.glob("tmp*")), list(copies.glob("tmp*"))  # the dead run's copy is gone
    assert _ended(stage)  # the orphaned stage no longer trains in it
    assert "nothing to queue again" in sh(sys.executable, "-m", "cifarlab.requeue", cwd=project)

    _start_queue(project)
    _wait_for(lambda: _queue_idle(project), "the queue to finish")
    shown = pd.read_csv(io.StringIO(dvc("exp", "show", "--csv", cwd=project)))
    runs = shown[shown["typ"] != "baseline"].set_index("Experiment")
    assert sorted(runs.index) == ["bystander", "victim"], shown  # each once
    assert (runs["State"] == "Success").all(), shown
    assert int(runs.loc["victim", "train.epochs"]) == EPOCHS and int(runs.loc["bystander", "train.seed"]) == 2
    assert runs["accuracy"].astype(float).notna().all(), shown  # both ran to the end of the pipeline


def test_requeue_stops_the_dead_runs_stage_processes_and_leaves_a_users_shell_alone(tmp_path):
    """What _stop_leftovers stops in a dead experiment's copy: DVC's processes and the stage
    scripts' (with their children), never another process that happens to work there."""
    from cifarlab.commands.requeue import _stop_leftovers

    copy = tmp_path / "copy"
    (copy / "stages").mkdir(parents=True)
    (copy / "stages" / "train.py").write_text("import time\ntime.sleep(120)\n")
    stage = subprocess.Popen([sys.executable, "stages/train.py"], cwd=copy)
    shell = subprocess.Popen(["sh", "-c", "sleep 120"], cwd=copy)  # a user's shell, opened in the copy
    try:
        time.sleep(1)
        _stop_leftovers(copy)
        assert stage.wait(timeout=15) is not None  # stopped
        assert shell.poll() is None  # still running
    finally:
        for process in (stage, shell):
            process.kill()
            process.wait()
