"""docs/sharing.md, run as written between two clones of one bare git repository with one local
DVC remote: a pushed run and a pushed experiment arrive whole (the model byte for byte, the
metrics equal), the pulled project is up to date and predicts, and the registry hands out the model."""
from __future__ import annotations

import json
import shlex

import pytest
import yaml

from cifarlab.models.checkpoint import weights_digest
from conftest import make_arrays, write_image_tree
from test_pipeline import ALWAYS, dvc, git_commit, make_project, ran, readme_commands, sh

pytestmark = pytest.mark.slow

SECTIONS = ("A remote, once per project", "Push after a run, pull on another machine", "Experiments travel by name",
            "The model in DVC's model registry")


def _commands(section: str) -> list[str]:
    """The section's bash lines, in the page's order."""
    return [line for line in readme_commands("", section=section) if line]


def _run(command: str, cwd) -> str:
    argv = shlex.split(command)
    if argv[0] == "git":
        return sh("git", "-c", "user.name=t", "-c", "user.email=t@t", *argv[1:], cwd=cwd)
    if argv[0] == "dvc":
        return dvc(*argv[1:], cwd=cwd)
    return sh("bash", "-c", command, cwd=cwd)


def test_a_pushed_run_and_experiment_arrive_whole_in_another_clone(tmp_path):
    remote_setup, (push, pull, repro, predict), exp_commands, (tag, push_tag, artifact) = map(_commands, SECTIONS)
    (run_exp, exp_push), (exp_pull, exp_show, metrics_diff, plots_diff, exp_apply) = exp_commands[:2], exp_commands[2:]
    tree = write_image_tree(tmp_path / "tree", make_arrays(per_class_train=12, per_class_test=4))
    mine = make_project(tmp_path / "cifarlab", str(tree.resolve()))
    sh("git", "init", "-q", "--bare", str(tmp_path / "team.git"), cwd=tmp_path)
    sh("git", "remote", "add", "origin", str(tmp_path / "team.git"), cwd=mine)
    for command in remote_setup:
        _run(command, mine)
    dvc("repro", cwd=mine)
    git_commit(mine, "first run")
    _run(push, mine)
    sh("git", "push", "-q", "origin", "HEAD", cwd=mine)
    pushed = {path: (mine / path).read_bytes()
              for path in ("models/model.pt", "models/cifar10-model.pt", "models/model.onnx", "data/prepared.npz")}
    _run(run_exp, mine)  # the experiment's outputs now fill mine's workspace
    _run(exp_push, mine)

    theirs = tmp_path / "theirs"
    sh("git", "clone", "-q", str(tmp_path / "team.git"), str(theirs), cwd=tmp_path)
    assert not (theirs / "models" / "model.pt").exists()
    _run(pull, theirs)
    for path, content in pushed.items():
        assert (theirs / path).read_bytes() == content, path
    assert ran(_run(repro, theirs)) == ALWAYS  # up to date: nothing retrains
    write_image_tree(theirs / "photos", make_arrays(per_class_train=1, per_class_test=0))
    assert len([line for line in _run(predict, theirs).splitlines() if line.startswith("photos/")]) == 3

    _run(exp_pull, theirs)
    assert "small-net" in _run(exp_show, theirs)
    compared = _run(metrics_diff, theirs).splitlines()  # the metrics that differ (on this tiny data, not all)
    assert "small-net" in compared[0] and any(line.startswith("metrics/train.json") for line in compared[1:])
    _run(plots_diff, theirs)
    assert (theirs / "dvc_plots" / "index.html").is_file()
    _run(exp_apply, theirs)
    applied = yaml.safe_load((theirs / "params.yaml").read_text())
    assert applied["model"] == "s9net"
    assert (theirs / "metrics" / "evaluate.json").read_text() == sh(
        "git", "show", "refs/exps/" + _exp_ref(mine, "small-net") + ":metrics/evaluate.json", cwd=mine)

    sh("git", "checkout", "-q", "--", ".", cwd=mine)  # back to the committed run before tagging it
    _run(tag, mine)
    _run(push_tag, mine)
    fetched = tmp_path / "registry"
    fetched.mkdir()
    _run(artifact.replace("../cifarlab", str(mine)), fetched)  # the model of mine's last commit
    assert (fetched / "model.pt").read_bytes() == pushed["models/cifar10-model.pt"]
    predicted = sh("python", "-m", "cifarlab.predict", "--model", "model.pt", str(theirs / "photos"), cwd=fetched)
    assert "photos/" in predicted and "not calibrated" not in predicted  # its temperature travelled inside it


def _exp_ref(project, name: str) -> str:
    refs = sh("git", "for-each-ref", "--format=%(refname)", "refs/exps/", cwd=project).split()
    (ref,) = [ref for ref in refs if ref.endswith("/" + name)]
    return ref.removeprefix("refs/exps/")


def test_fine_tuning_on_own_classes_starts_from_the_copied_model(tmp_path):
    """docs/sharing.md's "Start from a trained model", as written: a trained airbench94 copied to
    start.pt, then an experiment on photos of other classes (cat, and two the model never saw)
    that starts from it: training.json names the file and its weights, the new model knows the
    new classes."""
    import torch

    copy, run = _commands("Start from a trained model")
    tree = write_image_tree(tmp_path / "tree", make_arrays(per_class_train=12, per_class_test=4))
    project = make_project(tmp_path / "cifarlab", str(tree.resolve()), model="airbench94")
    dvc("repro", "train", cwd=project)
    photos = write_image_tree(tmp_path / "my-photos", make_arrays(per_class_train=20, per_class_test=4, seed=1))
    for split in ("train", "test"):
        for old, new in (("bird", "hamster"), ("ship", "rabbit")):
            (photos / split / old).rename(photos / split / new)
    _run(copy, project)
    _run(run, project)
    started = json.loads((project / "models" / "training.json").read_text())["started_from"]
    start = torch.load(tmp_path / "start.pt", weights_only=True)
    assert started == {"checkpoint": "../start.pt", "weights_sha256": weights_digest(start["state_dict"])}
    tuned = torch.load(project / "models" / "model.pt", weights_only=True)
    assert tuned["classes"] == ["cat", "hamster", "rabbit"] and start["classes"] == ["bird", "cat", "ship"]
