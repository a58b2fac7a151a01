"""What the report and its figures tell a reader: captions that can be read, a smoke run marked as
one, and a faithfulness verdict that weighs how good the model is."""
from __future__ import annotations

import numpy as np
import pytest

from cifarlab.config import parse_params
from cifarlab.gallery import gallery_figure
from cifarlab.report.sections import calibration_rows, faithfulness_words, run_summary
from conftest import default_params_dict


@pytest.mark.parametrize("columns, captions", [(5, ["truck (0.85) / automobile"] * 10),
                                               (6, ["why automobile?\n(no positive evidence)"] * 12)])
def test_gallery_captions_sit_between_rows_without_touching_an_image(columns, captions):
    images = [np.full((32, 32, 3), 128, dtype=np.uint8)] * len(captions)
    fig = gallery_figure(images, captions, columns=columns, title="10 most confident mistakes",
                         colorbar="GradCAM" if columns == 6 else "")
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    axes = [ax for ax in fig.axes if ax.images]
    boxes = [ax.get_window_extent(renderer) for ax in axes]
    for ax in axes:
        caption = ax.title.get_window_extent(renderer)
        assert not any(caption.overlaps(box) for box in boxes), ax.title.get_text()
    title = fig._suptitle.get_window_extent(renderer)
    top_row = max(box.y1 for box in boxes)
    assert title.y0 >= top_row and title.y0 - top_row < 0.1 * fig.bbox.height  # just above the images, no gap


def _summary(train_images: int = 50_000, source_train: int = 50_000, accuracy: float = 91.0, gap: float = 0.15,
             started_from: dict | None = None) -> dict[str, str]:
    params = parse_params(default_params_dict())
    train = {"train_images": train_images, "val_images": 0, "source_images": {"train": source_train, "test": 1000},
             "model": "airbench94", "params": 1, "macs": 1, "layer_kinds": "Conv2d x1",
             "receptive_field": 67, "epochs": 5, "device": "cpu", "precision": "bf16", "layout": "channels_last",
             "train_seconds": 90.0, "train_images_per_s": 300.0, "epoch_seconds": 95.0, "max_lr": None,
             "lr_finder_lr": None, "checkpoint": {"epoch": 5, "chosen_by": "last epoch"}, "best_val_acc": None,
             "started_from": started_from}
    evaluation = {"tta": "none", "accuracy": accuracy, "num_test_images": 1000, "loss": 0.8,
                  "accuracy_95": {"low": accuracy - 1.5, "high": accuracy + 1.5}, "suspect_labels": 12}
    gradcam = {"most_faithful_layer": "block2", "road_gap": {"block2": gap}, "faithfulness_images": 100}
    return dict(run_summary(train, evaluation, gradcam, [0.5], params.data, num_classes=10))


def test_a_run_on_a_subset_is_marked_not_comparable_and_a_whole_run_is_not():
    flagged = _summary(train_images=5000)
    assert "5,000 of 50,000 train images" in flagged["not comparable"] and "5 epochs" in flagged["not comparable"]
    assert "not comparable" not in _summary(train_images=50_000)
    # a subset as large as a small dataset used all of it: the counts used decide, not the params
    assert "not comparable" not in _summary(train_images=120, source_train=120)


def test_a_run_at_chance_says_so_and_a_learning_run_does_not():
    assert "chance level for 10 classes" in _summary(accuracy=10.0)["at chance"]
    assert "at chance" not in _summary(accuracy=40.0)


def test_faithfulness_verdict_follows_the_gap_and_qualifies_a_weak_model():
    gradcam = {"most_faithful_layer": "c3", "road_gap": {"c3": 0.15, "c2": 0.05}, "faithfulness_images": 100}
    strong = faithfulness_words(gradcam, [0.5], accuracy=91.0)
    assert strong.startswith("The pixels GradCAM highlights matter clearly more") and "undertrained" not in strong
    weak = faithfulness_words(gradcam, [0.5], accuracy=33.0)
    assert "right on only 33% of test images" in weak
    small_gap = faithfulness_words({**gradcam, "road_gap": {"c3": 0.01}}, [0.5], accuracy=91.0)
    assert "do not trust these maps" in small_gap


def test_the_summary_gives_the_accuracys_interval_and_the_model_it_started_from():
    summary = _summary(accuracy=91.0, started_from={"checkpoint": "start.pt", "weights_sha256": "ab"})
    assert "95% interval 89.5-92.5%" in summary["test accuracy (the result)"]
    assert summary["started from"] == "start.pt (train.init_from)"
    assert summary["suspect labels"].startswith("12 of the misclassified test images may be labelled wrongly")
    assert "started from" not in _summary()


@pytest.mark.parametrize("confidence, way, fitted_on, words", [
    (71.0, "under-confident", "validation", "fitted on the validation split:"),
    (97.0, "over-confident", "test, cross-fitted", "fitted on the test split (there is no validation split"),
])
def test_the_calibration_section_says_which_way_the_probabilities_err_and_where_t_was_fitted(confidence, way,
                                                                                             fitted_on, words):
    rows = dict(calibration_rows({"mean_confidence_without_tta": confidence, "accuracy_without_tta": 90.0,
                                  "calibration_error_without_tta": 19.2, "calibration_error": 21.0,
                                  "calibration_error_calibrated": 1.1, "temperature": 0.55,
                                  "temperature_fitted_on": fitted_on}))
    assert rows["which way it errs"].startswith(f"{way}: without TTA its mean confidence is {confidence:.1f}%")
    assert rows["calibration error (ECE, 15 bins)"] == ("19.2 points without TTA, 21.0 with TTA, 1.1 after "
                                                        "temperature scaling")
    assert rows["temperature"].startswith(f"0.55, {words}")
    assert "predict and the ONNX card divide" in rows["temperature"]
