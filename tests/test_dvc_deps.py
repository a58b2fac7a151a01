"""dvc.yaml stays a page a person reads; what its code deps mean is tested by editing every
library file in a real project (test_pipeline.py)."""
from __future__ import annotations

import pytest
import yaml

from conftest import ROOT
from stage_imports import project_files

STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def test_dvc_yaml_stays_short():
    """Code deps are the core, a folder per stage and the few shared modules, not one line per module."""
    assert len((ROOT / "dvc.yaml").read_text().splitlines()) <= 130


@pytest.mark.parametrize("name", list(STAGES))
def test_each_stage_runs_its_own_short_script(name):
    """A stage's script is its first dep and stays a short page: the work lives in the library."""
    script = ROOT / "stages" / f"{name}.py"
    assert STAGES[name]["cmd"] == f"python stages/{name}.py" and STAGES[name]["deps"][0] == f"stages/{name}.py"
    assert len(script.read_text().splitlines()) <= 40


def test_dvc_reads_both_models_into_its_registry_with_type_and_labels():
    """What DVC's model registry lists (dvc.yaml's artifacts, as DVC itself reads them)."""
    from dvc.repo import Repo

    with Repo(str(ROOT)) as repo:
        artifacts = repo.artifacts.read()["dvc.yaml"]
    assert {name: (entry.path, entry.type, entry.labels) for name, entry in artifacts.items()} == {
        "cifar10-model": ("models/cifar10-model.pt", "model", ["cifar10", "pytorch"]),
        "cifar10-onnx": ("models/model.onnx", "model", ["cifar10", "onnx"])}


def test_the_plan_stage_declares_every_library_file_it_runs():
    """plan runs on every `dvc repro` (always_changed), so the edit-every-file test cannot see its
    code deps through `dvc status`: they are checked here against what stages/plan.py imports."""
    declared = [ROOT / dep for dep in STAGES["plan"]["deps"]]
    imported = project_files(ROOT / "stages" / "plan.py")
    missing = sorted(str(path.relative_to(ROOT)) for path in imported
                     if not any(path == dep or dep in path.parents for dep in declared))
    assert not missing, missing
