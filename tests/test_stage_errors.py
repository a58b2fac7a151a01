"""Bad input stops a stage with one line on stderr, exit status 2, no traceback, and no output
written or touched."""
from __future__ import annotations

import hashlib

import pytest
import yaml

from conftest import copy_project, param_parent

OUTPUT_DIRS = {"data", "plan", "models", "metrics", "plots", "eval", "reports"}


@pytest.fixture
def project(tmp_path, image_tree):
    root = copy_project(tmp_path / "project")
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["data"].update(source=str(image_tree), val=3)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return root


def _edit(project, dotted, value=None, rename=None):
    params = yaml.safe_load((project / "params.yaml").read_text())
    node, last = param_parent(params, dotted)
    if rename:
        node[rename] = node.pop(last)
    else:
        node[last] = value
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def _outputs(project) -> dict[str, str]:
    """Every file under the output folders with a hash of its bytes."""
    return {p.relative_to(project).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(project.rglob("*")) if p.is_file() and p.relative_to(project).parts[0] in OUTPUT_DIRS}


def _assert_one_line_error(result, message):
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert "Traceback" not in result.stderr and len(errors) == 1 and message in errors[0]


BAD_PARAMS = [
    (dict(dotted="model", value="resnet50"), "model = 'resnet50' is not a network here; allowed: auto, airbench93"),
    (dict(dotted="train.epochs", rename="epoch"), "did you mean 'train.epochs'"),
    (dict(dotted="train.epochs", value="ten"), "train.epochs = 'ten' is not allowed"),
    (dict(dotted="train.epochs", value=0),
     "train.epochs = 0 is not allowed; expected a number of epochs >= 1 or 'auto'"),
    (dict(dotted="train.batch_size", value=-32), "train.batch_size = -32"),
    (dict(dotted="augment.cutout.p", value=1.5), "augment.cutout.p = 1.5"),
    (dict(dotted="augment.blur", value={"p": 0.5}), "unknown key 'augment.blur'"),
    (dict(dotted="train.optimizer.name", value="rmsprop"), "one of sgd, muon, adam, adamw"),
    (dict(dotted="train.scheduler.name", value="warmup"), "one of onecycle, linear, plateau, step, cosine, none"),
    (dict(dotted="data.source", value="/no/such/folder"), "data.source = '/no/such/folder': no such file"),
]


@pytest.mark.parametrize("edit, message", BAD_PARAMS,
                         ids=[e["dotted"] + ("~" if "rename" in e else "") for e, _ in BAD_PARAMS])
def test_bad_params_stop_the_first_stage_before_it_writes(project, run_python, edit, message):
    _edit(project, **edit)
    _assert_one_line_error(run_python(["stages/download.py"], cwd=project), message)
    assert _outputs(project) == {}


def test_a_failing_stage_leaves_existing_outputs_untouched(project, run_python):
    for stage in ("download", "stats"):
        assert run_python([f"stages/{stage}.py"], cwd=project).returncode == 0
    before = _outputs(project)
    _edit(project, "train.optimizer.lr", -1)
    for stage in ("download", "stats", "plan", "train"):
        _assert_one_line_error(run_python([f"stages/{stage}.py"], cwd=project), "train.optimizer.lr = -1")
    assert _outputs(project) == before


def test_a_layer_the_network_lacks_stops_the_plan_before_anything_trains(project, run_python):
    """Which layers a network has is known once it is built: the plan stage, first to build it."""
    for stage in ("download", "stats"):
        assert run_python([f"stages/{stage}.py"], cwd=project).returncode == 0
    before = _outputs(project)
    _edit(project, "gradcam.layers", ["layer9"])
    _assert_one_line_error(run_python(["stages/plan.py"], cwd=project),
                           "gradcam.layers names 'layer9', which is not a module of AirBench94; allowed: default, "
                           "block1, block2, block3")
    assert _outputs(project) == before


def test_misclassify_count_larger_than_test_set_is_refused(project, run_python):
    assert run_python(["stages/download.py"], cwd=project).returncode == 0
    _edit(project, "misclassify.count", 10_000)
    _assert_one_line_error(run_python(["stages/misclassify.py"], cwd=project),
                           "misclassify.count = 10000 exceeds the 9 test images")
    assert list(_outputs(project)) == ["data/prepared.npz"]


def test_unreadable_image_stops_download_with_nothing_half_prepared(project, run_python, image_tree):
    (image_tree / "test" / "cat" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    _assert_one_line_error(run_python(["stages/download.py"], cwd=project), "broken.jpg: not a readable image")
    assert _outputs(project) == {}


def test_a_stage_run_by_hand_replaces_all_its_outputs_or_none(project, run_python):
    """An immutable metrics/ (a real refusal to write, even for root) stops evaluate: its new
    predictions must not land beside the old metrics."""
    import shutil
    import subprocess
    if shutil.which("chattr") is None:
        pytest.skip("chattr not available")
    for key, value in (("model", "tiny"), ("train.epochs", 1), ("train.batch_size", 8)):
        _edit(project, key, value)
    for stage in ("download", "stats", "plan", "train", "evaluate"):
        assert run_python([f"stages/{stage}.py"], cwd=project).returncode == 0, stage
    _edit(project, "evaluate.tta", "none")
    before = _outputs(project)
    if subprocess.run(["chattr", "+i", str(project / "metrics")], capture_output=True).returncode:
        pytest.skip("this filesystem has no immutable attribute")
    try:
        _assert_one_line_error(run_python(["stages/evaluate.py"], cwd=project), "metrics/evaluate.json")
    finally:
        subprocess.run(["chattr", "-i", str(project / "metrics")], check=True)
    assert _outputs(project) == before
    assert not [p for p in project.rglob("*.tmp")]


def test_gradcam_run_by_hand_keeps_only_the_grids_asked_for_and_the_road_figure(project, run_python):
    """A layer dropped from gradcam.layers loses its grid; the ROAD figure in the same folder stays."""
    changes = {"model": "tiny", "train.epochs": 1, "train.batch_size": 8, "misclassify.count": 3,
               "gradcam.layers": ["c2", "c3"]}
    for key, value in changes.items():
        _edit(project, key, value)
    for stage in ("download", "stats", "plan", "train", "evaluate", "misclassify", "gradcam"):
        assert run_python([f"stages/{stage}.py"], cwd=project).returncode == 0, stage
    folder = project / "plots" / "6-gradcam"
    assert sorted(p.name for p in folder.glob("*.png")) == ["gradcam-1.png", "gradcam-2.png", "road_faithfulness.png"]
    _edit(project, "gradcam.layers", ["c3"])
    assert run_python(["stages/gradcam.py"], cwd=project).returncode == 0
    assert sorted(p.name for p in folder.glob("*.png")) == ["gradcam-1.png", "road_faithfulness.png"]
