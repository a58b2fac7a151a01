"""Bad input stops a stage with one line on stderr, exit status 2, no traceback, and no output."""
from __future__ import annotations

import pytest
import yaml

from conftest import copy_project


@pytest.fixture
def project(tmp_path, image_tree):
    root = copy_project(tmp_path / "project")
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["data"]["source"] = str(image_tree)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return root


def _edit(project, dotted, value=None, rename=None):
    params = yaml.safe_load((project / "params.yaml").read_text())
    *parents, last = dotted.split(".")
    node = params
    for key in parents:
        node = node[key]
    if rename:
        node[rename] = node.pop(last)
    else:
        node[last] = value
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def _outputs(project):
    return sorted(p.relative_to(project).as_posix() for p in project.rglob("*")
                  if p.is_file() and p.parts[len(project.parts)] in {"data", "models", "metrics", "plots", "eval", "reports"})


@pytest.mark.parametrize("edit, message", [
    (dict(dotted="model", value="resnet50"), "model = 'resnet50' is not allowed; expected one of"),
    (dict(dotted="train.epochs", rename="epoch"), "did you mean 'train.epochs'"),
    (dict(dotted="data.source", value="/no/such/folder"), "data.source = '/no/such/folder': no such file"),
])
def test_bad_input_stops_download_with_one_clear_line(project, run_python, edit, message):
    _edit(project, **edit)
    result = run_python(["stages/download.py"], cwd=project)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert _outputs(project) == []


def test_misclassify_count_larger_than_test_set_is_refused(project, run_python):
    assert run_python(["stages/download.py"], cwd=project).returncode == 0
    _edit(project, "misclassify.count", 10_000)
    result = run_python(["stages/misclassify.py"], cwd=project)
    assert result.returncode == 2 and "misclassify.count = 10000 exceeds the 9 test images" in result.stderr
    assert _outputs(project) == ["data/prepared.npz"]
