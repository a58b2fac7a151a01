"""Evaluation numbers and the mistakes chosen from them."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from cifarlab.evaluate.scoring import (
    class_details,
    confusion_matrix,
    most_confused,
    per_class_rates,
    predictions_table,
    summary_metrics,
    tta_logits,
)
from cifarlab.feed.inference import predict
from cifarlab.misclassify.choose import choose_misclassified
from cifarlab.predictions_csv import PREDICTION_COLUMNS, caption

CLASSES = ["cat", "dog", "ship"]


def _logits_for(predicted, confidence=3.0):
    logits = torch.zeros(len(predicted), len(CLASSES))
    logits[torch.arange(len(predicted)), torch.tensor(predicted)] = confidence
    return logits


def test_predictions_and_confusion_csv_layout_for_dvc_confusion_template():
    labels = torch.tensor([0, 1, 2, 2])
    table = predictions_table(_logits_for([0, 2, 2, 1]), labels, CLASSES)
    assert list(table.columns) == PREDICTION_COLUMNS == ["index", "actual", "predicted", "actual_id", "predicted_id",
                                                         "confidence", "label_suspect"]
    assert table[["actual", "predicted"]].values.tolist() == [["cat", "cat"], ["dog", "ship"],
                                                              ["ship", "ship"], ["ship", "dog"]]
    assert table["confidence"].between(0, 1).all()


def test_per_class_rates_and_undefined_precision():
    matrix = confusion_matrix(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1]), 3)
    assert matrix.tolist() == [[1, 1, 0], [0, 2, 0], [0, 0, 0]]
    recall, precision = per_class_rates(matrix)
    assert recall == [50.0, 100.0, None]
    assert precision == [100.0, pytest.approx(66.67), None]


def test_most_confused_pairs_are_ordered_by_count():
    actual = np.array([0, 0, 0, 1, 1, 2])
    predicted = np.array([1, 1, 2, 0, 1, 2])
    pairs = most_confused(confusion_matrix(actual, predicted, 3), CLASSES)
    assert pairs == [{"actual": "cat", "predicted": "dog", "count": 2},
                     {"actual": "cat", "predicted": "ship", "count": 1},
                     {"actual": "dog", "predicted": "cat", "count": 1}]


def test_summary_metrics_are_strict_json():
    labels = torch.tensor([0, 1, 1])
    logits = _logits_for([0, 1, 0])
    matrix = confusion_matrix(labels.numpy(), logits.argmax(1).numpy(), 3)
    metrics, details = summary_metrics(logits, labels), class_details(matrix, CLASSES)
    json.dumps([metrics, details], allow_nan=False)
    assert metrics["accuracy"] == pytest.approx(66.6667) and metrics["num_test_images"] == 3
    assert details["per_class_precision"]["ship"] is None


class _LeftHalf(nn.Module):
    """Logits from the mean of the left half of the image: a flip changes them."""

    def forward(self, x):
        left = x[..., : x.shape[-1] // 2].mean(dim=(1, 2, 3))
        return torch.stack([left, -left], dim=1)


def _views(images: torch.Tensor, shift: int) -> torch.Tensor:
    """The images moved `shift` pixels down and right with the edge reflected in, computed apart."""
    padded = torch.nn.functional.pad(images, (1, 1, 1, 1), mode="reflect")
    return torch.roll(padded, shifts=(shift, shift), dims=(-2, -1))[..., 1:-1, 1:-1]


@pytest.mark.parametrize("mode", ["none", "flip", "flip_translate"])
def test_each_tta_mode_weighs_its_views_as_documented(mode):
    images = torch.rand(4, 3, 8, 8)
    loader = [(images[:3], torch.zeros(3, dtype=torch.long)), (images[3:], torch.zeros(1, dtype=torch.long))]
    model = _LeftHalf()
    plain, _ = predict(model, loader, torch.device("cpu"))
    logits = tta_logits(model, loader, torch.device("cpu"), plain, mode)

    def mirrored(x):
        return (model(x) + model(torch.flip(x, dims=[-1]))) / 2
    translated = (mirrored(_views(images, 1)) + mirrored(_views(images, -1))) / 4
    expected = {"none": model(images), "flip": mirrored(images), "flip_translate": mirrored(images) / 2 + translated}
    assert torch.allclose(logits, expected[mode], atol=1e-6)
    if mode != "none":
        assert not torch.allclose(logits, model(images))
    if mode == "flip_translate":
        assert not torch.allclose(logits, mirrored(images))


@pytest.fixture
def predictions():
    return pd.DataFrame({
        "index": range(8),
        "actual": ["cat", "cat", "dog", "dog", "ship", "ship", "cat", "dog"],
        "predicted": ["dog", "cat", "cat", "ship", "cat", "ship", "ship", "cat"],
        "actual_id": [0, 0, 1, 1, 2, 2, 0, 1],
        "predicted_id": [1, 0, 0, 2, 0, 2, 2, 0],
        "confidence": [0.6, 0.99, 0.9, 0.5, 0.7, 0.8, 0.95, 0.9],
        "label_suspect": [False, False, True, False, False, False, False, False],
    })


@pytest.mark.parametrize("order, expected", [
    ("confidence", [6, 2, 7, 4]),   # most confident mistakes; ties by lower index
    ("index", [0, 2, 3, 4]),
    ("per_class", [6, 2, 4, 0]),    # best of cat, dog, ship, then cat's next
])
def test_selection_orders(predictions, order, expected):
    assert choose_misclassified(predictions, 4, order)["index"].tolist() == expected


def test_random_order_is_seeded_and_only_picks_mistakes(predictions):
    first = choose_misclassified(predictions, 3, "random", seed=1)["index"].tolist()
    assert first == choose_misclassified(predictions, 3, "random", seed=1)["index"].tolist()
    assert set(first) <= {0, 2, 3, 4, 6, 7} and first == sorted(first)


def test_fewer_mistakes_than_asked_gives_all_of_them(predictions):
    assert len(choose_misclassified(predictions, 50)) == 6


def test_caption_reads_predicted_confidence_slash_actual(predictions):
    row = next(predictions.iloc[[0]].itertuples())
    assert caption(row) == "dog (0.60) / cat"
    assert caption(next(predictions.iloc[[2]].itertuples())) == "cat (0.90) / dog\nlabel may be wrong"
