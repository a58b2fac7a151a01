"""`python -m cifarlab.profile`: a training step's time by kind of operator, every microsecond
counted once."""
from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

import yaml

from cifarlab.profile import kind_of, profile_steps, profile_table
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


def test_the_rows_add_up_to_the_whole_step_and_show_where_the_time_goes():
    seconds, rate = profile_steps(default_params(**SMALL), steps=1, epoch=1)
    assert seconds["convolutions"] > 0 and seconds["optimiser step (all of it)"] > 0
    assert seconds["augmentation and batching"] > 0 and rate > 0
    table = profile_table(seconds).splitlines()
    shares = [float(line.split("|")[3].strip().rstrip("%")) for line in table[2:-1]]
    assert abs(sum(shares) - 100) < 0.6 and table[-1].startswith("| all |")
    assert table[-2].startswith("| outside any operator")


def test_the_command_prints_the_table_for_the_recipe_it_is_given(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(default_params_dict(**SMALL)))
    result = subprocess.run([sys.executable, "-m", "cifarlab.profile", "--params", str(params), "--steps", "1"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    last_epoch = default_params().train.epochs
    assert result.stdout.startswith(f"tiny, epoch {last_epoch}, batch 32 in micro-batches of 16")
    assert "| convolutions |" in result.stdout
