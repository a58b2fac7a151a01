"""End to end: `dvc repro` in a fresh git+dvc copy of the project runs all seven stages, and
DVC reruns only what a change touches."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import SHARED_JPEG, copy_project, make_arrays, write_image_tree

pytestmark = pytest.mark.slow
STAGES = ["download", "stats", "train", "evaluate", "misclassify", "gradcam", "report"]


def _env() -> dict:
    env = dict(os.environ, NO_ALBUMENTATIONS_UPDATE="1", DVC_NO_ANALYTICS="1")
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env["PATH"]
    return env


def sh(*args, cwd: Path) -> str:
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True, env=_env())
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


def dvc(*args, cwd: Path) -> str:
    return sh(sys.executable, "-m", "dvc", *args, cwd=cwd)


def ran(log: str) -> list[str]:
    return re.findall(r"Running stage '(\w+)'", log)


def git_commit(cwd: Path, message: str) -> None:
    sh("git", "add", "-A", cwd=cwd)
    sh("git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", message, cwd=cwd)


def make_project(root: Path, source: str, **overrides) -> Path:
    project = copy_project(root)
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["data"]["source"] = source
    params["model"] = "tiny"
    params["train"]["epochs"] = 1
    params["train"]["batch_size"] = 16
    params["misclassify"]["count"] = 4
    for dotted, value in overrides.items():
        *parents, last = dotted.split("__")
        node = params
        for key in parents:
            node = node[key]
        node[last] = value
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    sh("git", "init", "-q", cwd=project)
    dvc("init", "-q", cwd=project)
    git_commit(project, "pipeline")
    return project


def declared_outputs(project: Path) -> list[Path]:
    stages = yaml.safe_load((project / "dvc.yaml").read_text())["stages"]
    outs = []
    for stage in stages.values():
        for out in stage["outs"]:
            outs.append(project / (out if isinstance(out, str) else next(iter(out))))
    return outs


def test_repro_runs_all_stages_then_only_what_a_change_touches_for_every_model(tmp_path):
    tree = write_image_tree(tmp_path / "tree", make_arrays(per_class_train=12, per_class_test=4))
    project = make_project(tmp_path / "project", str(tree))

    log = dvc("repro", cwd=project)
    assert ran(log) == STAGES
    for path in declared_outputs(project):
        assert path.is_file() and path.stat().st_size > 0, path
    assert "Data and pipelines are up to date" in dvc("status", cwd=project)
    assert ran(dvc("repro", cwd=project)) == []

    git_commit(project, "first run")
    log = dvc("exp", "run", "-S", "model=s9net", cwd=project)
    assert ran(log) == ["train", "evaluate", "misclassify", "gradcam", "report"]
    report = (project / "reports" / "report.html").read_text()
    assert "cifarlab report: s9net" in report and report.count("data:image/png;base64,") == 4
    for name in ("resnet18", "resnet18_ln", "custom_resnet"):
        assert ran(dvc("exp", "run", "-S", f"model={name}", cwd=project))[0] == "train", name
        metrics = yaml.safe_load((project / "metrics" / "train.json").read_text())
        assert metrics["model"] == name and metrics["params"] > 0 and metrics["receptive_field"] > 0
    table = dvc("exp", "show", "--md", cwd=project)
    assert all(name in table for name in ("s9net", "resnet18_ln", "custom_resnet"))


@pytest.mark.skipif(not SHARED_JPEG.is_file(), reason="../shared/data/cifar10-jpeg.tar.gz not present")
def test_pipeline_on_the_real_cifar10_images(tmp_path):
    project = make_project(tmp_path / "project", str(SHARED_JPEG),
                           data__subset__train=300, data__subset__test=100)
    assert ran(dvc("repro", cwd=project)) == STAGES
    metrics = yaml.safe_load((project / "metrics" / "evaluate.json").read_text())
    assert metrics["num_test_images"] == 100
    assert set(metrics["per_class_accuracy"]) == {"airplane", "automobile", "bird", "cat", "deer",
                                                  "dog", "frog", "horse", "ship", "truck"}
