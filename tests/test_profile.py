"""`cifarlab profile`: a training step's time by kind of operator, every microsecond
counted once."""
from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

import pytest
import yaml

from cifarlab.commands.profile import OUTSIDE, kind_of, profile_steps, profile_table
from conftest import default_params, default_params_dict

SMALL = {"model": "tiny", "train.batch_size": 32, "train.micro_batch": 16}


def _event(name: str, parent=None) -> SimpleNamespace:
    return SimpleNamespace(name=name, cpu_parent=parent)


def test_an_operator_counts_for_the_range_it_runs_under_else_for_its_own_kind():
    step = _event("Optimizer.step#Muon.step")
    assert kind_of(_event("aten::mm", _event("aten::matmul", step))) == "optimiser step (all of it)"
    assert kind_of(_event("aten::mm")) == "matrix multiplies (head)"
    assert kind_of(_event("aten::convolution_backward")) == "convolutions"
    assert kind_of(_event("aten::index", _event("batch"))) == "augmentation and batching"
    assert kind_of(_event("aten::something_new")) == "other"


def test_each_microsecond_counts_once_and_the_rest_is_shown_as_outside_any_operator():
    """The operator rows are self times: together they stay within the step's measured wall time
    (summing total times, which include children, would exceed it), and what they leave is the
    last row, not spread over the others."""
    params = default_params(**SMALL)
    seconds, rate = profile_steps(params, steps=2, epoch=1, num_classes=10)
    assert seconds["convolutions"] > 0 and seconds["optimiser step (all of it)"] > 0
    assert seconds["augmentation and batching"] > 0
    wall = params.train.batch_size / rate
    counted = sum(value for kind, value in seconds.items() if kind != OUTSIDE)
    assert counted <= wall * 1.02, (counted, wall)
    assert seconds[OUTSIDE] == pytest.approx(wall - counted, abs=1e-6)
    table = profile_table(seconds).splitlines()
    assert table[-1].startswith("| all |") and table[-2].startswith(f"| {OUTSIDE}")


def test_the_command_prints_the_table_for_the_recipe_it_is_given(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(default_params_dict(**SMALL)))
    result = subprocess.run([sys.executable, "-m", "cifarlab.profile", "--params", str(params), "--steps", "1"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    last_epoch = default_params(**SMALL).train.epochs
    assert result.stdout.startswith(f"tiny, epoch {last_epoch}, batch 32 in micro-batches of 16")
    assert "| convolutions |" in result.stdout
