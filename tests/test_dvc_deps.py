"""dvc.yaml declares every project file a stage runs, so an edit to any of them makes that
stage (and only the stages that import it) stale: `dvc status` never lies."""
from __future__ import annotations

import pytest
import yaml

from conftest import ROOT
from stage_imports import project_files

STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def _dep_paths(stage: dict) -> list[str]:
    return [dep if isinstance(dep, str) else next(iter(dep)) for dep in stage.get("deps", [])]


@pytest.mark.parametrize("name", list(STAGES))
def test_every_imported_project_file_is_a_dependency(name):
    deps = [ROOT / dep for dep in _dep_paths(STAGES[name])]
    script = ROOT / "stages" / f"{name}.py"
    assert script in deps, f"stage {name}: its script stages/{name}.py is not in deps"
    missing = sorted(str(path.relative_to(ROOT)) for path in project_files(script)
                     if not any(path == dep or dep in path.parents for dep in deps))
    assert not missing, f"stage {name} imports {', '.join(missing)} but dvc.yaml does not list them in its deps"


@pytest.mark.parametrize("name", list(STAGES))
def test_no_stage_depends_on_project_code_it_does_not_run(name):
    """An edit to code a stage never runs must not rerun it (download does not rerun when a model
    or the training loop changes): every file dep is imported, and every folder dep holds at least
    one imported file (a folder is a coarser dep: an edit to its other files reruns the stage too)."""
    used = project_files(ROOT / "stages" / f"{name}.py")
    unused = []
    for dep in _dep_paths(STAGES[name]):
        path = ROOT / dep
        if dep.startswith("src/") and not (path.is_dir() and any(path in f.parents for f in used)):
            unused += [dep] if path not in used else []
    assert not unused, f"stage {name} lists {', '.join(unused)} in its deps but never imports them"


def test_dvc_yaml_stays_short():
    """Code deps are folders and a small core, not one line per module."""
    assert len((ROOT / "dvc.yaml").read_text().splitlines()) <= 120
