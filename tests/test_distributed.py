"""Data-parallel training (train.processes, torchrun) on a CPU with gloo: how each global batch is
split, and the train stage run as 1 and 2 processes, killed, resumed, and on two "machines"."""
from __future__ import annotations

import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from cifarlab.config import ParamsError, parse_params
from cifarlab.core.errors import UserError
from cifarlab.feed.batches import DeviceBatches, batch_order, steps_per_pass, train_batches
from cifarlab.stats import Stats
from cifarlab.train.distributed import Group, check_batch_split, check_devices, failure_line
from conftest import (
    PLAIN_RECIPE,
    default_params,
    default_params_dict,
    make_arrays,
    param_parent,
    project_on_tree,
    train_results,
    write_image_tree,
)

STATS = Stats(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))


def _order(count: int, batch_size: int, rank: int = 0, world: int = 1) -> list[list[int]]:
    return [index.tolist() for index in batch_order(count, batch_size, torch.Generator().manual_seed(7), rank, world)]


def test_processes_together_see_exactly_the_batches_of_one_process():
    one = _order(40, 8)
    parts = [_order(40, 8, rank, 2) for rank in range(2)]
    assert len(parts[0]) == len(parts[1]) == len(one) == 5
    for step, whole in enumerate(one):
        assert parts[0][step] + parts[1][step] == whole  # rank 0 the first half, rank 1 the second
        assert len(parts[0][step]) == len(parts[1][step]) == 4


def test_a_last_batch_too_small_for_two_images_per_process_is_dropped():
    assert steps_per_pass(41, 8, world=1, training=True) == 5  # 1 image: BatchNorm cannot train on it
    assert steps_per_pass(42, 8, world=1, training=True) == 6
    assert steps_per_pass(42, 8, world=2, training=True) == 5  # 1 image each
    assert steps_per_pass(44, 8, world=2, training=True) == 6
    assert steps_per_pass(41, 8, world=1, training=False) == 6  # scoring keeps every image
    assert sum(len(index) for index in _order(44, 8, 1, 2)) == 22


def test_every_epoch_shuffles_alike_on_every_process_and_augments_differently():
    image = np.random.default_rng(0).integers(0, 255, (1, 32, 32, 3), dtype=np.uint8)
    images, labels = np.repeat(image, 32, axis=0), np.arange(32)  # one image: only augmentation tells them apart
    augment = default_params(**{"augment.cutout.p": 1.0}).augment
    for loader in ("albumentations", "device"):
        ranks = [train_batches(loader, images, labels, augment, STATS, 8, 3, torch.device("cpu"), 0, rank, 2)
                 for rank in range(2)]
        single = train_batches(loader, images, labels, augment, STATS, 8, 3, torch.device("cpu"))
        for epoch in (1, 2):
            for batches in (*ranks, single):
                batches.set_epoch(epoch)
            got = [list(batches) for batches in ranks]
            for step, (_, whole_labels) in enumerate(single):
                assert torch.cat([got[0][step][1], got[1][step][1]]).tolist() == whole_labels.tolist(), loader
            assert not torch.equal(got[0][0][0], got[1][0][0]), loader  # each process draws its own crops and holes


def test_device_batches_shard_on_the_training_device():
    images = np.zeros((12, 8, 8, 3), dtype=np.uint8)
    batches = DeviceBatches(images, np.arange(12), None, STATS, 6, torch.device("cpu"), shuffle=True, rank=1, world=2)
    batches.set_epoch(1)
    assert [len(labels) for _, labels in batches] == [3, 3]


def test_the_global_batch_must_split_evenly():
    with pytest.raises(ParamsError, match=r"train.batch_size = 30 is the global batch .* train.processes = 4"):
        parse_params(default_params_dict(**{"train.batch_size": 30, "train.processes": 4}))
    with pytest.raises(UserError, match="train.batch_size = 30 must divide evenly among the 4"):
        check_batch_split(30, Group(rank=0, world=4))  # under torchrun the world size comes from torchrun
    check_batch_split(32, Group(rank=0, world=4))


def test_what_a_machine_cannot_run_is_refused_before_any_process_starts(monkeypatch):
    with pytest.raises(UserError, match="train.sync_bn = true needs CUDA GPUs"):
        check_devices(2, torch.device("cpu"), sync_bn=True)
    check_devices(1, torch.device("cpu"), sync_bn=True)  # one process: nothing to synchronise
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(UserError, match="train.processes = 4, but this machine has 2 CUDA GPUs"):
        check_devices(4, torch.device("cuda", 0), sync_bn=False)
    check_devices(2, torch.device("cuda", 0), sync_bn=True)


# --- the train stage as several processes -------------------------------------------------------

EPOCHS = 3


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """A project copy with download, stats and plan done; train: tiny, batch 16, the LR range test on,
    fp32 (bf16 sums round differently with 1 and 2 threads, which would blur the comparisons)."""
    project = project_on_tree(tmp_path_factory.mktemp("ddp"), 40, 10, **{
        **PLAIN_RECIPE, "data.val": 12, "train.epochs": EPOCHS, "train.batch_size": 16,
        "train.scheduler.onecycle.peak_epoch": 1,
        "train.precision": "fp32",
        "train.scheduler.onecycle.max_lr": "auto", "train.lr_finder.num_iter": 10,
        "train.lr_finder.end_lr": 0.1})  # a pick that trains smoothly, so the loss curves can be compared
    for stage in ("stages/download.py", "stages/stats.py", "stages/plan.py"):
        subprocess.run([sys.executable, stage], cwd=project, check=True, capture_output=True)
    return project


def _copy(prepared: Path, dest: Path, processes: int, **changes) -> Path:
    """A copy of the prepared project that trains with `processes` and dotted-key changes."""
    project = Path(shutil.copytree(prepared, dest))
    params = yaml.safe_load((project / "params.yaml").read_text())
    for dotted, value in {"train.processes": processes, **changes}.items():
        node, last = param_parent(params, dotted)
        node[last] = value
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return project


def _train(project: Path, **popen) -> subprocess.CompletedProcess:
    """The plan for the copy's params (they may have changed), then the train stage."""
    planned = subprocess.run([sys.executable, "stages/plan.py"], cwd=project, capture_output=True, text=True, **popen)
    if planned.returncode:
        return planned
    return subprocess.run([sys.executable, "stages/train.py"], cwd=project, capture_output=True, text=True, **popen)


def _written(project: Path) -> list[str]:
    return sorted(str(path.relative_to(project)) for folder in ("models", "metrics", "plots", ".cache")
                  for path in (project / folder).rglob("*") if path.is_file())


@pytest.fixture(scope="module")
def runs(prepared, tmp_path_factory):
    """The same params trained as one process, and twice as two."""
    done = {}
    for name, processes in (("one", 1), ("two", 2), ("two_again", 2)):
        project = _copy(prepared, tmp_path_factory.mktemp(name) / "project", processes)
        result = _train(project)
        assert result.returncode == 0, result.stderr
        (project / "train.log").write_text(result.stdout)
        done[name] = project
    return done


@pytest.mark.slow
def test_two_processes_write_exactly_the_files_of_one(runs):
    assert _written(runs["two"]) == _written(runs["one"])
    assert not (runs["two"] / ".cache" / "train_state.pt").exists()
    _, sweep, metrics, _ = train_results(runs["two"])
    facts = json.loads((runs["two"] / "models" / "training.json").read_text())
    assert facts["processes"] == 2 and metrics["epochs"] == EPOCHS
    # the LR range test ran once, on rank 0 with whole global batches: the sweep one process makes
    # (rank 0 has one core of two here, so sums round a little differently)
    assert (runs["two"] / "train.log").read_text().count("LR range test over") == 1
    two, one = (pd.read_csv(io.StringIO(text)) for text in (sweep, train_results(runs["one"])[1]))
    assert list(two["lr"]) == list(one["lr"]) and np.allclose(two["loss"], one["loss"], rtol=0.01)


@pytest.mark.slow
def test_two_process_runs_with_the_same_seed_are_identical(runs):
    assert train_results(runs["two"]) == train_results(runs["two_again"])


@pytest.mark.slow
def test_two_processes_compute_what_one_does(prepared, tmp_path):
    """Same global batch, same images per step, same LR: the gradient averaged over two processes
    is the one-process gradient, so with nothing per-process left (no BatchNorm: resnet18_ln; no
    augmentation) the losses agree to float rounding (measured: 4-5 significant digits; the bound
    is 1e-3 relative). A wrong split or gradients summed instead of averaged are far outside it.
    With BatchNorm each process normalises over its own half-batch, and the runs differ as two
    seeds would (tiny here: final train loss 0.02 alone, 0.42 as two processes)."""
    exact = {"model": "resnet18_ln", "train.epochs": 1, "train.scheduler.onecycle.max_lr": 0.02,
             **{f"augment.{name}.p": 0.0 for name in ("crop", "hflip", "rotate", "shift_scale_rotate", "cutout",
                                                     "to_gray")}}
    histories = []
    for processes in (1, 2):
        project = _copy(prepared, tmp_path / f"p{processes}", processes, **exact)
        result = _train(project)
        assert result.returncode == 0, result.stderr
        histories.append({split: pd.read_csv(project / "dvclive" / "plots" / "metrics" / split / "loss.tsv",
                                             sep="\t")["loss"] for split in ("train", "val", "test")})
    one, two = histories
    for split in one:
        assert np.allclose(two[split], one[split], rtol=1e-3), (split, list(one[split]), list(two[split]))


def _rank_pid(marker: str, rank: int) -> int | None:
    for proc in Path("/proc").iterdir():
        try:
            env = (proc / "environ").read_bytes().split(b"\0")
        except (OSError, ValueError):
            continue
        if f"CIFARLAB_TEST={marker}".encode() in env and f"RANK={rank}".encode() in env:
            return int(proc.name)
    return None


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds the rank's process through /proc")
def test_killing_one_rank_fails_cleanly_and_the_rerun_resumes(prepared, runs, tmp_path):
    project = _copy(prepared, tmp_path / "project", 2)
    subprocess.run([sys.executable, "stages/plan.py"], cwd=project, check=True, capture_output=True)
    state = project / ".cache" / "train_state.pt"
    marker = uuid.uuid4().hex
    process = subprocess.Popen([sys.executable, "stages/train.py"], cwd=project, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=dict(os.environ, CIFARLAB_TEST=marker))
    deadline = time.monotonic() + 180
    while not state.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    victim = _rank_pid(marker, 1)
    assert process.poll() is None and victim is not None, "training finished before a rank could be killed"
    os.kill(victim, signal.SIGKILL)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 2, stderr
    assert "error: training process 1 of 2 was killed by SIGKILL" in stderr and "Traceback" not in stderr, stderr
    # rank 0 says why it stopped too: it lost contact, or the launcher interrupted it first
    assert all(line.startswith(("error: ", "interrupted: ")) for line in stderr.strip().splitlines()), stderr
    assert not list(project.rglob("*.tmp")), "a temp file was left behind"
    assert 1 <= torch.load(state, weights_only=True)["epoch"] < EPOCHS

    rerun = _train(project)
    assert rerun.returncode == 0, rerun.stderr
    assert "resuming after epoch" in rerun.stdout
    assert train_results(project) == train_results(runs["two"])


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_two_machines_launched_with_torchrun_write_one_set_of_outputs_that_dvc_records(tmp_path):
    """The README's multi-machine lines, as written, on 127.0.0.1: two torchrun launches share this
    folder as two 'machines' with one process each; then DVC records what rank 0 wrote."""
    from test_pipeline import dvc, make_project, readme_commands, sh

    (prepare,) = readme_commands("dvc repro stats")
    (launch,) = readme_commands("torchrun")
    (record,) = readme_commands("dvc commit")
    tree = write_image_tree(tmp_path / "tree", make_arrays(per_class_train=20, per_class_test=4))
    project = make_project(tmp_path / "project", str(tree))
    sh("bash", "-c", prepare, cwd=project)
    env = dict(os.environ, HEAD="127.0.0.1", PORT=str(_free_port()), RUN=uuid.uuid4().hex)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env["PATH"]
    nodes = [subprocess.Popen(["bash", "-c", launch], cwd=project, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    logs = [node.communicate(timeout=300)[0] for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], logs
    assert sum("kept epoch" in log for log in logs) == 1, logs  # rank 0 alone writes
    assert json.loads((project / "models" / "training.json").read_text())["processes"] == 2
    sh("bash", "-c", record, cwd=project)
    assert "up to date" in dvc("status", "train", cwd=project)


@pytest.mark.slow
def test_the_default_recipe_trains_on_two_processes_as_on_one_past_the_bias_freeze(prepared, tmp_path):
    """airbench94 with Muon, whitening and its bias frozen after epoch 3, trained 4 epochs. One
    process computes each 12-image batch in micro-batches of 6 and two processes 6 images each, so
    BatchNorm normalises the same 6 images together in both, and with one core per process in both
    the training losses agree to float rounding (bound: 1e-3 relative; with two cores against one,
    Muon's orthogonalisation lifts the rounding in a gradient's weakest directions to full-size
    updates and the runs drift apart by about 1% in 4 epochs). Validation scores differ: they use BatchNorm's running
    statistics, which one process updates twice a step (per micro-batch) and rank 0 of two once,
    from its own half. No augmentation: each process draws its own."""
    train = {**default_params_dict()["train"], "epochs": 4, "batch_size": 12, "micro_batch": 6, "precision": "fp32"}
    augment = {name: {**cfg, "p": 0.0} for name, cfg in default_params_dict()["augment"].items()}
    losses = []
    for processes in (1, 2):
        project = _copy(prepared, tmp_path / f"p{processes}", processes, model="airbench94",
                        train={**train, "processes": processes}, augment=augment)
        result = _train(project, env={**os.environ, "OMP_NUM_THREADS": "1"})  # one core per process, as two have
        assert result.returncode == 0, result.stderr
        losses.append(pd.read_csv(project / "dvclive" / "plots" / "metrics" / "train" / "loss.tsv", sep="\t")["loss"])
    one, two = losses
    assert len(one) == len(two) == 4
    assert np.allclose(two, one, rtol=1e-3), (list(one), list(two))


def test_a_failed_collective_names_its_own_cause_and_blames_a_peer_only_when_one_is_gone():
    group = Group(rank=1, world=2)
    own = RuntimeError("Expected to have finished reduction in the prior iteration before starting a new one.")
    assert failure_line(own, group) == ("training process 1 of 2 failed: Expected to have finished reduction in the "
                                        "prior iteration before starting a new one.")
    for gone in (RuntimeError("[gloo/transport/tcp/pair.cc:534] Connection closed by peer [127.0.0.1]:29500"),
                 RuntimeError("[gloo/transport/tcp/pair.cc:589] Read error [127.0.0.1]:1: Connection reset by peer"),
                 torch.distributed.DistNetworkError("failed to recv, got 0 bytes")):
        assert failure_line(gone, group).startswith("training process 1 of 2 stopped because another one failed"), gone


ALL_REDUCES_SCRIPT = """
import json, sys
import torch
from torch import nn
from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook
from cifarlab.train import distributed
from cifarlab.train.loop import _forward_backward

group, device = distributed.from_env(), torch.device("cpu")
data = torch.Generator().manual_seed(1)
images, labels = torch.randn(32, 3, 8, 8, generator=data), torch.randint(0, 3, (32,), generator=data)
mine = slice(16 * group.rank, 16 * group.rank + 16)  # each process its own half of the 32 images


def network():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.Flatten(), nn.Linear(288, 3))


whole = network()  # the step as one process takes it: the mean loss over all 32 images
nn.functional.cross_entropy(whole(images), labels).backward()
counts, gaps = {}, {}
with distributed.joined(group, device):
    for micro_batch in (0, 4):  # one pass of 16 images, then four of 4
        model = distributed.DataParallel(network(), device).for_epoch(1)
        calls = []
        model.register_comm_hook(None, lambda state, bucket: calls.append(1) or allreduce_hook(None, bucket))
        _forward_backward(model, images[mine], labels[mine], torch.amp.GradScaler("cpu", enabled=False), device,
                          "fp32", 0.0, micro_batch)
        counts[micro_batch] = len(calls)
        gaps[micro_batch] = max((ours.grad - one.grad).abs().max().item()
                                for ours, one in zip(model.parameters(), whole.parameters()))
(open(sys.argv[1] + f"/{group.rank}.json", "w")).write(json.dumps({"all_reduces": counts, "gap": gaps}))
"""


def test_a_data_parallel_step_all_reduces_its_gradients_once_however_many_micro_batches(tmp_path):
    """Micro-batches accumulate locally (DDP's no_sync) and the step's summed gradient is averaged
    over the processes once, after the last: a step of four micro-batches sends as many
    all-reduces as a step of one pass, not four times as many, and each process ends the step
    with the gradient one process gets from the whole batch at once."""
    from cifarlab.train.distributed import launch
    script = tmp_path / "count.py"
    script.write_text(ALL_REDUCES_SCRIPT)
    launch(2, sys.executable, str(script), str(tmp_path))
    for rank in (0, 1):
        seen = json.loads((tmp_path / f"{rank}.json").read_text())
        counts = seen["all_reduces"]
        assert counts["4"] == counts["0"] >= 1, counts
        assert max(seen["gap"].values()) < 1e-6, seen["gap"]


IDLE_SCRIPT = """
import json, sys
import torch
from cifarlab.models.registry import build_model
from cifarlab.train import distributed
from cifarlab.train.loop import _forward_backward

group, device = distributed.from_env(), torch.device("cpu")
seen = []
with distributed.joined(group, device):
    torch.manual_seed(0)
    model = build_model("airbench94", 10)
    parallel = distributed.DataParallel(model, device)
    for epoch in (1, 3, 4, 5):
        model.start_epoch(epoch)
        wrapper = parallel.for_epoch(epoch)
        for _ in range(2):  # a second step is where DDP notices gradients it waited for in vain
            images, labels = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))
            _forward_backward(wrapper, images, labels, torch.amp.GradScaler("cpu", enabled=False), device, "fp32",
                              0.0, 0)
        seen.append([epoch, wrapper.find_unused_parameters, id(wrapper)])
(open(sys.argv[1] + f"/{group.rank}.json", "w")).write(json.dumps(seen))
"""


def test_ddp_looks_for_unused_parameters_only_in_the_epochs_after_the_bias_freezes(tmp_path):
    """airbench's whitening bias trains for 3 epochs: until then DDP skips its search of the autograd
    graph; from epoch 4 a wrapper that searches (rebuilt once) lets steps without that gradient run."""
    from cifarlab.train.distributed import launch
    script = tmp_path / "idle.py"
    script.write_text(IDLE_SCRIPT)
    launch(2, sys.executable, str(script), str(tmp_path))
    for rank in (0, 1):
        seen = json.loads((tmp_path / f"{rank}.json").read_text())
        assert [(epoch, searches) for epoch, searches, _ in seen] == [(1, False), (3, False), (4, True), (5, True)]
        wrappers = [wrapper for _, _, wrapper in seen]
        assert wrappers[0] == wrappers[1] and wrappers[2] == wrappers[3]
