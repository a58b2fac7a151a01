"""Numbers that are not numbers: weights and metrics with NaN or infinity are refused where they
are written or read, in one line naming where, so no run exits as a success with them."""
from __future__ import annotations

import json

import pytest
import torch

from cifarlab.core.errors import UserError
from cifarlab.core.io import write_json
from cifarlab.models.checkpoint import load_checkpoint, save_checkpoint, weights_digest
from cifarlab.models.registry import build_model
from cifarlab.stats import Stats

STATS = Stats([0.5] * 3, [0.2] * 3)


def _nan_running_variance() -> tuple[dict, str]:
    weights = build_model("tiny", 3).state_dict()
    name = next(key for key in weights if key.endswith("running_var"))
    weights[name][0] = float("nan")  # training mode never reads it; evaluation would, as 10% accuracy
    return weights, name


def test_a_checkpoint_with_a_nan_running_variance_is_never_written(tmp_path):
    weights, name = _nan_running_variance()
    with pytest.raises(UserError, match=f"NaN or infinite in {name}\\), so no checkpoint was written"):
        save_checkpoint(tmp_path / "model.pt", "tiny", weights, ["a", "b", "c"], STATS, 1, {})
    assert not (tmp_path / "model.pt").exists()


def test_a_checkpoint_file_holding_nan_is_refused_by_every_reader(tmp_path):
    """One written by hand or by another tool, its checksum right: evaluate, predict, score and
    train.init_from all read it through load_checkpoint."""
    save_checkpoint(tmp_path / "model.pt", "tiny", build_model("tiny", 3).state_dict(), ["a", "b", "c"], STATS, 1, {})
    ckpt = torch.load(tmp_path / "model.pt", weights_only=True)
    weights, name = _nan_running_variance()
    torch.save({**ckpt, "state_dict": weights, "digest": weights_digest(weights)}, tmp_path / "nan.pt")
    with pytest.raises(UserError, match=f"nan.pt: its weights are not all numbers \\(NaN or infinite in {name}\\)"):
        load_checkpoint(tmp_path / "nan.pt")


def test_json_is_never_written_with_a_nan_and_the_key_is_named(tmp_path):
    path = tmp_path / "metrics.json"
    with pytest.raises(UserError, match=r"metrics.json: per_class.1.accuracy = nan, not a number; nothing was written"):
        write_json(path, {"accuracy": 10.0, "per_class": [{"accuracy": 9.5}, {"accuracy": float("nan")}]})
    assert not path.exists()
    write_json(path, {"accuracy": 10.0, "best_val_acc": None})
    assert json.loads(path.read_text()) == {"accuracy": 10.0, "best_val_acc": None}
