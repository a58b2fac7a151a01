"""Beyond accuracy: the expected calibration error (ECE) is what Guo et al. define and torchmetrics
computes, the reliability diagram's points add up to it, temperature scaling finds the temperature
that miscalibrated logits were made with, predict and the ONNX card use the temperature of the
weights they run and never one fitted to other weights, Wilson intervals, and suspect labels."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from cifarlab.evaluate.calibration import assess, calibration_error, fit_temperature, reliability
from cifarlab.evaluate.scoring import accuracy_interval
from cifarlab.evaluate.suspects import suspect_labels
from cifarlab.export.onnx import describe
from cifarlab.intervals import interval_95
from cifarlab.models.checkpoint import load_checkpoint, load_temperature, save_checkpoint, save_release
from cifarlab.models.registry import build_model
from cifarlab.stats import Stats

CLASSES = 10


def _logits_with(confidence: torch.Tensor, predicted: torch.Tensor) -> torch.Tensor:
    """Logits whose softmax gives `predicted` the probability `confidence`, the rest equal shares."""
    rest = ((1 - confidence) / (CLASSES - 1)).log()
    logits = rest[:, None].repeat(1, CLASSES)
    logits[torch.arange(len(predicted)), predicted] = confidence.log()
    return logits


def _other_class(predicted: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return (predicted + torch.randint(1, CLASSES, predicted.shape, generator=generator)) % CLASSES


def test_a_calibrated_predictor_has_an_ece_near_zero():
    """Right with exactly the probability it states: ECE is only sampling noise."""
    generator = torch.Generator().manual_seed(0)
    count = 100_000
    confidence = 0.15 + 0.84 * torch.rand(count, generator=generator)
    predicted = torch.randint(0, CLASSES, (count,), generator=generator)
    right = torch.rand(count, generator=generator) < confidence
    labels = torch.where(right, predicted, _other_class(predicted, generator))
    assert calibration_error(_logits_with(confidence, predicted), labels) < 0.5


def test_a_known_miscalibration_gives_the_hand_computed_ece():
    """Half the images at confidence 0.95, all right (|1 - 0.95| = 5 points), half at 0.55, all
    wrong (|0 - 0.55| = 55 points): ECE = (5 + 55) / 2 = 30 points; the diagram shows both bins."""
    generator = torch.Generator().manual_seed(1)
    confidence = torch.tensor([0.95] * 50 + [0.55] * 50)
    predicted = torch.randint(0, CLASSES, (100,), generator=generator)
    labels = torch.cat([predicted[:50], _other_class(predicted[50:], generator)])
    logits = _logits_with(confidence, predicted)
    assert calibration_error(logits, labels) == pytest.approx(30.0, abs=1e-3)
    points = reliability(logits, labels)
    assert [(p["bin"], p["confidence"], p["accuracy"], p["images"]) for p in points] == [
        (9, 55.0, 0.0, 50), (15, 95.0, 100.0, 50)]


def test_the_reliability_points_average_to_the_ece():
    generator = torch.Generator().manual_seed(2)
    logits = 3 * torch.randn(5000, CLASSES, generator=generator)
    labels = torch.randint(0, CLASSES, (5000,), generator=generator)
    points = reliability(logits, labels)
    weighted = sum(p["images"] * abs(p["accuracy"] - p["confidence"]) for p in points) / 5000
    assert weighted == pytest.approx(calibration_error(logits, labels), abs=0.01)


def test_ties_at_bin_edges_fall_in_the_bins_the_ece_uses():
    """Confidences exactly on an edge k/15, and exactly 1.0: the diagram's bins are torchmetrics'
    [k/15, (k+1)/15), with 1.0 on its own, so its points still average to the ECE."""
    from torchmetrics.functional.classification import multiclass_calibration_error

    from cifarlab.evaluate.calibration import BINS, reliability_points
    edges = torch.linspace(0, 1, BINS + 1)
    top = torch.tensor([edges[8], edges[8], 0.55, 0.52, 1.0, 1.0, edges[13]])
    correct = torch.tensor([1.0, 1.0, 0.0, 1.0, 1.0, 0.0, 0.0])
    probs = torch.stack([top, 1 - top], dim=1)  # two classes: the top one is class 0
    labels = (1 - correct).long()
    points = reliability_points(top, correct)
    assert [p["images"] for p in points] == [1, 3, 1, 2]  # 0.52 | 8/15, 8/15, 0.55 | 13/15 | 1.0, 1.0
    weighted = sum(p["images"] * abs(p["accuracy"] - p["confidence"]) for p in points) / len(top)
    assert weighted == pytest.approx(100 * multiclass_calibration_error(probs, labels, 2, n_bins=BINS).item(),
                                     abs=1e-3)


def _sharpened(temperature: float, count: int = 20_000, seed: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """Labels drawn from softmax(true logits), and the true logits times `temperature`."""
    generator = torch.Generator().manual_seed(seed)
    truth = 2 * torch.randn(count, CLASSES, generator=generator)
    labels = torch.multinomial(torch.softmax(truth, dim=1), 1, generator=generator).squeeze(1)
    return truth * temperature, labels


@pytest.mark.parametrize("made_with", [0.4, 3.0])
def test_temperature_scaling_finds_the_temperature_and_calibrates(made_with):
    logits, labels = _sharpened(made_with)
    found = fit_temperature(logits, labels)
    assert found == pytest.approx(made_with, rel=0.05)
    assert calibration_error(logits / found, labels) < 1.0 < calibration_error(logits, labels)


def test_without_a_validation_split_the_calibrated_error_is_measured_on_images_the_temperature_never_saw():
    """Alternate images made with opposite miscalibrations: a temperature fitted on all of them
    and measured on them looks better than none, while each half scaled by the other half's temperature
    (what an unseen image gets) is worse than not scaling at all. The reported error must be the
    second, and the temperature shipped the first."""
    over, under = _sharpened(3.0, count=4000, seed=6), _sharpened(0.4, count=4000, seed=7)
    logits = torch.stack([over[0], under[0]], dim=1).reshape(-1, CLASSES)  # over, under, over, ...
    labels = torch.stack([over[1], under[1]], dim=1).reshape(-1)
    in_sample = calibration_error(logits / fit_temperature(logits, labels), labels)
    metrics, _, facts = assess(logits, logits, labels, None)
    reported = metrics["calibration_error_calibrated"]
    assert reported > in_sample + 10 and reported > metrics["calibration_error_without_tta"]  # 40, 23 and 27 points
    assert facts["temperature"] == fit_temperature(logits, labels) and metrics["temperature_fitted_on"] == (
        "test, cross-fitted")


def test_assess_fits_on_the_validation_split_when_there_is_one():
    test_logits, test_labels = _sharpened(2.0, seed=4)
    val_logits, val_labels = _sharpened(0.5, seed=5)  # fitted here, the test logits stay badly calibrated
    metrics, diagram, facts = assess(test_logits, test_logits, test_labels, (val_logits, val_labels))
    assert facts["temperature"] == fit_temperature(val_logits, val_labels) == metrics["temperature"]
    assert "validation" in facts["fitted_on"] and set(diagram) == {"without_tta", "tta", "calibrated"}
    assert metrics["calibration_error_calibrated"] > metrics["calibration_error_without_tta"]
    metrics, _, facts = assess(test_logits, test_logits, test_labels, None)
    assert "test split" in facts["fitted_on"] and metrics["calibration_error_calibrated"] < 1.0


def test_wilson_intervals_in_the_metrics():
    assert interval_95(90, 100) == {"low": 82.56, "high": 94.48}  # Wilson (1927) for 90/100, z = 1.96
    logits = torch.eye(CLASSES)[[0] * 9 + [1]]
    assert accuracy_interval(logits, torch.zeros(10, dtype=torch.long)) == interval_95(9, 10)


def test_predict_and_the_onnx_card_use_the_temperature_of_these_weights_only(tmp_path):
    torch.manual_seed(0)
    weights = build_model("tiny", 3).state_dict()
    save_checkpoint(tmp_path / "model.pt", "tiny", weights, ["a", "b", "c"], Stats([0.5] * 3, [0.2] * 3), 1, {})
    ckpt = torch.load(tmp_path / "model.pt", weights_only=True)
    temperature, note = load_temperature(tmp_path / "model.pt", ckpt)
    assert temperature == 1.0 and "not calibrated" in note  # no calibration.json yet
    calibration = tmp_path / "calibration.json"
    calibration.write_text(json.dumps({"temperature": 1.7, "weights_sha256": ckpt["digest"]}))
    assert load_temperature(tmp_path / "model.pt", ckpt) == (1.7, None)
    assert describe(ckpt, 1.7)["output"]["temperature"] == 1.7
    calibration.write_text(json.dumps({"temperature": 1.7, "weights_sha256": "0" * 64}))
    temperature, note = load_temperature(tmp_path / "model.pt", ckpt)
    assert temperature == 1.0 and "other weights" in note
    calibration.write_text('{"temperature": -1')
    assert load_temperature(tmp_path / "model.pt", ckpt)[0] == 1.0


def test_the_released_checkpoint_carries_its_temperature_without_a_file_beside_it(tmp_path):
    """The registry hands out models/cifar10-model.pt alone: its temperature is inside it."""
    weights = build_model("tiny", 3).state_dict()
    save_checkpoint(tmp_path / "model.pt", "tiny", weights, ["a", "b", "c"], Stats([0.5] * 3, [0.2] * 3), 1, {})
    save_release(tmp_path / "fetched" / "model.pt", torch.load(tmp_path / "model.pt", weights_only=True), 1.7,
                 "the validation split's 5,000 images")
    model, ckpt = load_checkpoint(tmp_path / "fetched" / "model.pt")
    assert load_temperature(tmp_path / "fetched" / "model.pt", ckpt) == (1.7, None)
    assert ckpt["temperature_fitted_on"] == "the validation split's 5,000 images"


def test_a_flipped_label_is_suspect_and_the_models_own_mistakes_are_not():
    """Confident, separable predictions for 300 images; one label flipped (the model is as sure of
    another class as of any image's) is suspect; a mistake made unsure, the label plausible, is not."""
    generator = torch.Generator().manual_seed(6)
    labels = torch.arange(300) % 3
    logits = 6 * F.one_hot(labels, 3).float() + torch.randn(300, 3, generator=generator) * 0.3
    given = labels.clone()
    given[10] = (labels[10] + 1) % 3  # a wrong label: the image is plainly labels[10], as sure as any
    logits[10] = 9 * F.one_hot(labels[10], 3).float()
    logits[20] = torch.tensor([0.3, 0.0, 0.0]) if labels[20] != 0 else torch.tensor([0.0, 0.3, 0.0])  # unsure
    suspect = suspect_labels(logits, given)
    assert (logits[20].argmax() != given[20]) and not suspect[20]
    assert suspect[10] and suspect.sum() == 1
