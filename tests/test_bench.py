"""The benchmark runs on CPU with tiny counts and writes every figure it prints (no speed asserted)."""
from __future__ import annotations

import json

import pytest
import yaml

from cifarlab import bench
from conftest import ROOT, committed_params_dict

FIGURES = ("data_albumentations_img_s", "data_device_img_s", "train_step_img_s", "epoch_default_img_s",
           "epoch_device_path_img_s",
           "epoch_reference_img_s", "epoch_speedup", "achieved_tflops")


def test_benchmark_writes_a_row_per_model_and_each_stage_start_up(tmp_path, capsys, monkeypatch):
    out, params = tmp_path / "bench.json", tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(committed_params_dict()))
    monkeypatch.chdir(ROOT)
    bench.main(["--models", "tiny,s9net", "--images", "64", "--batch-size", "32", "--steps", "1", "--repeats", "1",
                "--params", str(params), "--out", str(out), "--stages"])
    report = json.loads(out.read_text())
    assert report["device"] == "cpu" and report["torch"]
    assert [row["model"] for row in report["results"]] == ["tiny", "s9net"]
    for row in report["results"]:
        assert row["macs_per_image"] > 0 and all(row[key] > 0 for key in FIGURES)
    startups = report["stage_startup_s"]
    assert list(startups) == list(yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"])
    assert all(seconds > 0 for seconds in startups.values())
    printed = capsys.readouterr().out
    assert "| tiny |" in printed and "| s9net |" in printed and "| download |" in printed


def test_unknown_model_is_refused_with_the_known_ones(capsys):
    with pytest.raises(SystemExit):
        bench.main(["--models", "vgg"])
    assert "unknown models vgg; known: custom_resnet" in capsys.readouterr().err
