"""Fine-tuning (train.init_from): training starts from a saved model's weights, the head keeps the
rows of the classes both know and makes new ones for the others, and a checkpoint that cannot fit
is refused in one line before any training."""
from __future__ import annotations

import pytest
import torch

from cifarlab.core.errors import UserError
from cifarlab.models.checkpoint import save_checkpoint, weights_digest
from cifarlab.models.registry import build_model
from cifarlab.stats import Stats
from cifarlab.train.init_from import start_from
from cifarlab.train.run import run, training_facts
from conftest import CLASSES, PLAIN_RECIPE, default_params
from test_training import _data

STATS = Stats([0.5] * 3, [0.25] * 3)
SAVED_CLASSES = ["airplane", "cat", "dog"]


def _saved(path, model_name="tiny", classes=SAVED_CLASSES, image_size=32) -> dict:
    torch.manual_seed(123)
    weights = build_model(model_name, len(classes)).state_dict()
    save_checkpoint(path, model_name, weights, classes, STATS, 5, {}, "fp32", image_size)
    return weights


def _fresh(classes) -> torch.nn.Module:
    torch.manual_seed(7)
    return build_model("tiny", len(classes))


def test_every_weight_comes_from_the_checkpoint_when_the_classes_are_the_same(tmp_path):
    saved = _saved(tmp_path / "model.pt")
    model = _fresh(SAVED_CLASSES)
    line, digest = start_from(model, str(tmp_path / "model.pt"), "tiny", SAVED_CLASSES, 32)
    assert "every weight" in line and digest == weights_digest(saved)
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, saved[name]), name


def test_the_head_keeps_the_rows_of_shared_classes_by_name_and_makes_new_ones(tmp_path):
    saved = _saved(tmp_path / "model.pt")
    classes = ["dog", "cat", "horse", "frog"]  # other order, two classes the checkpoint never saw
    model = _fresh(classes)
    own = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    line, _ = start_from(model, str(tmp_path / "model.pt"), "tiny", classes, 32)
    assert "(dog, cat)" in line
    weights = model.state_dict()
    head = {"head.2.weight", "head.2.bias"}
    assert head <= set(weights)
    for name, tensor in weights.items():
        if name not in head:
            assert torch.equal(tensor, saved[name]), name
            continue
        assert torch.equal(tensor[0], saved[name][2]) and torch.equal(tensor[1], saved[name][1])  # dog, cat
        assert torch.equal(tensor[2:], own[name][2:])  # horse and frog: the seed's initial rows


@pytest.mark.parametrize("case, message", [
    ("missing", "is not a file"),
    ("other model", "holds a s9net model, but this run trains tiny; train the same model (-S model=s9net)"),
    ("other size", "was trained on 24 px images, but data.image_size is 32"),
    ("not a checkpoint", "not a PyTorch checkpoint (neither a zip archive nor a pickle), not a cifarlab checkpoint"),
])
def test_a_checkpoint_that_cannot_be_the_start_is_refused_in_one_line(tmp_path, case, message):
    path = tmp_path / "model.pt"
    if case == "other model":
        _saved(path, model_name="s9net")
    elif case == "other size":
        _saved(path, image_size=24)
    elif case == "not a checkpoint":
        path.write_bytes(b"not a checkpoint")
    with pytest.raises(UserError) as caught:
        start_from(_fresh(CLASSES), str(path), "tiny", CLASSES, 32)
    assert message in str(caught.value) and "\n" not in str(caught.value)
    assert str(caught.value).startswith("train.init_from:") or case == "not a checkpoint"


def test_training_starts_from_the_checkpoint_and_records_which_weights(tmp_path):
    """With a vanishing learning rate, one epoch leaves the learnt weights as they were loaded:
    training started from them, not from the seed's; training.json names the file and its digest."""
    saved = _saved(tmp_path / "model.pt", classes=CLASSES)
    params = default_params(**{**PLAIN_RECIPE, "model": "tiny", "data.val": 3, "train.epochs": 1,
                               "train.batch_size": 8, "train.scheduler.name": "none", "train.optimizer.lr": 1e-9,
                               "train.init_from": str(tmp_path / "model.pt")})
    result = run(params, _data(), STATS, device=torch.device("cpu"))
    for name, tensor in result.model.state_dict().items():
        if name.endswith("weight"):
            torch.testing.assert_close(tensor, saved[name], rtol=0, atol=1e-5, msg=name)
    facts = training_facts(params, result, 3, "named in params.yaml")
    assert facts["started_from"] == {"checkpoint": str(tmp_path / "model.pt"), "weights_sha256": weights_digest(saved)}
    assert training_facts(default_params(), result.__class__(**{**vars(result), "started_from": None}),
                          0, "named in params.yaml")["started_from"] is None


@pytest.mark.slow
def test_starting_from_the_stages_own_output_is_refused_before_dvc_can_delete_it(tmp_path):
    """`-S train.init_from=models/model.pt`: dvc repro deletes a stage's outputs before it runs it,
    so the user's trained model would be gone; the params check refuses it first (the plan stage,
    which always runs before train), and the model stays as it was."""
    import subprocess
    import sys

    from conftest import make_arrays, write_image_tree
    from test_pipeline import _env, dvc, make_project, ran

    tree = write_image_tree(tmp_path / "tree", make_arrays(per_class_train=12, per_class_test=4))
    project = make_project(tmp_path / "project", str(tree))
    dvc("repro", cwd=project)
    model = (project / "models" / "model.pt").read_bytes()
    done = subprocess.run([sys.executable, "-m", "dvc", "exp", "run", "-S", "train.init_from=models/model.pt"],
                          cwd=project, capture_output=True, text=True, env=_env())
    log = done.stdout + done.stderr
    assert done.returncode != 0 and "train" not in ran(log), log
    assert "train.init_from = models/model.pt is the train stage's own output" in log and "cp models/model.pt" in log
    assert (project / "models" / "model.pt").read_bytes() == model
