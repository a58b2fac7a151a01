"""The benchmark runs on CPU with tiny counts and writes every figure it prints (no speed asserted)."""
from __future__ import annotations

import inspect
import json

import pytest
import yaml

from cifarlab.commands import bench
from conftest import ROOT, default_params_dict

FIGURES = ("train_step_img_s", "epoch_albumentations_img_s", "epoch_device_path_img_s", "epoch_reference_img_s",
           "epoch_speedup", "achieved_tflops")


def test_benchmark_writes_a_row_per_model_and_each_stage_start_up(tmp_path, capsys, monkeypatch):
    out, params = tmp_path / "bench.json", tmp_path / "params.yaml"
    settings = default_params_dict()
    for name, p in {"crop": 1, "hflip": 0.5, "rotate": 0, "shift_scale_rotate": 0, "cutout": 0.5, "to_gray": 0}.items():
        settings["augment"][name]["p"] = p
    params.write_text(yaml.safe_dump(settings))
    monkeypatch.chdir(ROOT)
    bench.main(["--models", "tiny,s9net", "--images", "64", "--batch-size", "32", "--steps", "1", "--repeats", "1",
                "--params", str(params), "--out", str(out), "--stages"])
    report = json.loads(out.read_text())
    assert report["device"] == "cpu" and report["torch"]
    assert [row["model"] for row in report["results"]] == ["tiny", "s9net"]
    for row in report["results"]:
        assert row["macs_per_image"] > 0 and all(row[key] > 0 for key in FIGURES)
    params_row, every_row = report["data"]
    assert params_row["augment"] == report["augment"] == "crop p=1, hflip p=0.5, cutout p=0.5"
    assert every_row["augment"] == ("crop p=1, hflip p=0.5, rotate p=0.5, shift_scale_rotate p=0.5, cutout p=0.5, "
                                    "to_gray p=0.5")
    for row in report["data"]:
        assert row["speedup"] == pytest.approx(row["device_img_s"] / row["albumentations_img_s"])
    startups = report["stage_startup_s"]
    assert list(startups) == list(yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"])
    assert all(seconds > 0 for seconds in startups.values())
    printed = capsys.readouterr().out
    assert "| crop p=1, hflip p=0.5, cutout p=0.5 |" in printed
    assert "| tiny |" in printed and "| s9net |" in printed and "| download |" in printed


def test_unknown_model_is_refused_with_the_known_ones(capsys):
    with pytest.raises(SystemExit):
        bench.main(["--models", "vgg"])
    assert "unknown models vgg; known: airbench93, airbench94, custom_resnet" in capsys.readouterr().err


def test_the_benchmark_times_the_step_training_takes(monkeypatch):
    """Every step it times goes through training's builder: micro-batches of train.micro_batch
    images per forward pass and train.label_smoothing in the loss, as the train stage runs them."""
    from cifarlab import training_step as step_module
    from cifarlab.config import Params
    from cifarlab.stats import channel_stats
    from conftest import make_arrays

    settings = default_params_dict()
    settings["train"].update(batch_size=32, micro_batch=8, label_smoothing=0.3)
    params = Params.model_validate(settings)
    calls, passes = [], []
    real_epoch, real_step = step_module.train_epoch, bench.training_step

    def recorded_epoch(*args, **kwargs):
        given = inspect.signature(real_epoch).bind(*args, **kwargs).arguments
        calls.append((given["label_smoothing"], given["micro_batch"]))
        return real_epoch(*args, **kwargs)

    def recorded_step(*args, **kwargs):
        step = real_step(*args, **kwargs)
        step.model.register_forward_pre_hook(lambda _module, inputs: passes.append(len(inputs[0])))
        return step

    monkeypatch.setattr(step_module, "train_epoch", recorded_epoch)
    monkeypatch.setattr(bench, "training_step", recorded_step)
    monkeypatch.setattr(bench, "fastest_precision", lambda params, device, classes: "fp32")  # the plan's, tested there
    images, labels = make_arrays(per_class_train=22)["train"]
    bench.bench_model("tiny", images[:64], labels[:64], params, channel_stats(images), bench.select_device(), 1, 1)
    assert len(calls) == 6 and set(calls) == {(0.3, 8)}  # 2 loaders + step alone, each warmed up and timed once
    assert passes and set(passes) == {8}
