"""What the report shows, in order: the run summary, curves, LR range test, confusion matrix,
per-class table, calibration, mistakes, GradCAM grids, params and the model summary."""
from __future__ import annotations

from typing import TYPE_CHECKING

import yaml
from torch import nn

from cifarlab.core import paths
from cifarlab.facts import field_words
from cifarlab.predictions_csv import chance_words
from cifarlab.report.render import Section, model_summary

if TYPE_CHECKING:
    from cifarlab.config import DataConfig, Params


WEAK_MODEL_ACCURACY = 60.0  # below this test accuracy (%), a model's maps are a first look, not an explanation


def faithfulness_words(gradcam: dict, fractions: list[float], accuracy: float) -> str:
    """The ROAD result in a sentence a student can read, worded by the size of the gap and
    qualified by how often the model is right at all."""
    best = gradcam["most_faithful_layer"]
    gap = gradcam["road_gap"][best]
    verdict = ("The pixels GradCAM highlights matter clearly more to the prediction than the rest" if gap >= 0.1 else
               "GradCAM's highlights barely matter more than the rest of the image" if gap > 0.02 else
               "GradCAM's highlights do not matter more than the rest of the image: do not trust these maps")
    if accuracy < WEAK_MODEL_ACCURACY:
        verdict += (f", but this model is right on only {accuracy:.0f}% of test images, so its maps show what an "
                    "undertrained model looks at")
    others = [f"{name} {value:.2f}" for name, value in gradcam["road_gap"].items() if name != best]
    return (f"{verdict}. At {best}, the most faithful layer for this model, hiding the pixels GradCAM marks as "
            f"most relevant lowers the predicted class's probability by {gap:.2f} more (averaged over "
            f"{', '.join(f'{f:.0%}' for f in fractions)} hidden, {gradcam['faithfulness_images']} test images) "
            "than hiding the least relevant ones"
            + (f"; other layers: {', '.join(others)}" if others else "") + ".")


def comparability(train: dict, evaluation: dict) -> list[tuple[str, str]]:
    """A warning row for a run made on part of the data, judged by the images it used (a subset
    at least as large as the source is the whole source): its numbers do not compare with
    whole-dataset results."""
    used = {"train": train["train_images"] + train["val_images"], "test": evaluation["num_test_images"]}
    parts = [f"{used[split]:,} of {total:,} {split} images" for split, total in train["source_images"].items()
             if used[split] < total]
    if not parts:
        return []
    return [("not comparable", f"a run on a subset ({', '.join(parts)}) for {train['epochs']} epochs: a quick check "
                               "of the pipeline; its numbers do not compare with results on the whole dataset")]


def run_summary(train: dict, evaluation: dict, gradcam: dict, fractions: list[float], data: DataConfig,
                num_classes: int) -> list[tuple[str, str]]:
    tta = (f" with {evaluation['tta'].replace('_', ' + ')} TTA ({evaluation['accuracy_without_tta']:.2f}% without)"
           if evaluation["tta"] != "none" else "")
    max_lr = [] if train["max_lr"] is None else [("OneCycle max_lr", f"{train['max_lr']:.4g}" + (
        " (from the LR range test)" if train["lr_finder_lr"] is not None else ""))]
    return [
        *comparability(train, evaluation),
        *([("at chance", chance)] if (chance := chance_words(evaluation["accuracy"], num_classes)) else []),
        ("data", f"{data.source}: {train['train_images']:,} training, {train['val_images']:,} validation and "
                 f"{evaluation['num_test_images']:,} test images"),
        ("model", train["model"] + (f" for {train['epochs']} epochs in {train['precision']}, chosen by "
                                    f"{train['model_chosen_by']} (plan/choice.json)"
                                    if train.get("model_chosen_by", "").startswith("plan.ladder") else "")),
        ("parameters", f"{train['params']:,}"),
        ("multiply-adds per image", f"{train['macs']:,}"), ("receptive field", field_words(train)),
        ("layers", train["layer_kinds"]),
        *([("started from", f"{train['started_from']['checkpoint']} (train.init_from)")]
          if train.get("started_from") else []),
        ("epochs", train["epochs"]), ("device", f"{train['device']}, {train['precision']}, {train['layout']}"),
        ("training time", f"{train['train_seconds']} s in training steps ({train['train_images_per_s']} images/s); "
                          f"{train['epoch_seconds']} s with validation and test scoring"
                          + (f"; {train['estimated_train_seconds']} s expected after its first steps"
                             if train.get("estimated_train_seconds") else "")),
        *max_lr,
        ("checkpoint", f"epoch {train['checkpoint']['epoch']}, chosen by {train['checkpoint']['chosen_by']}"),
        ("validation accuracy", "no validation split (data.val = 0)" if train["best_val_acc"] is None else
         f"best {train['best_val_acc']:.2f}% at epoch {train['best_val_epoch']}, last {train['final_val_acc']:.2f}% "
         f"({train['val_images']} held-out training images)"),
        ("test accuracy (the result)", f"{evaluation['accuracy']:.2f}%{tta} on "
                                       f"{evaluation['num_test_images']:,} images of the test split, which no "
                                       f"training decision saw; 95% interval {_interval(evaluation['accuracy_95'])}"),
        ("test loss", f"{evaluation['loss']:.4f}"),
        ("suspect labels", f"{evaluation['suspect_labels']:,} of the misclassified test images may be labelled "
                           "wrongly rather than misjudged: confident learning (cleanlab) finds their given label "
                           "unlikely; marked \"label may be wrong\" in the gallery"),
        ("GradCAM faithfulness (ROAD)", faithfulness_words(gradcam, fractions, evaluation["accuracy"])),
    ]


def _interval(bounds: dict) -> str:
    return f"{bounds['low']:.1f}-{bounds['high']:.1f}%"


def per_class_rows(details: dict) -> list[tuple[str, str]]:
    def pct(value):
        return "n/a" if value is None else f"{value:.1f}%"
    return [(name, f"accuracy (recall) {pct(acc)} (95% interval {_interval(details['per_class_accuracy_95'][name])}),"
                   f" precision {pct(details['per_class_precision'][name])}")
            for name, acc in details["per_class_accuracy"].items()]


def calibration_rows(evaluation: dict) -> list[tuple[str, str]]:
    """Which way the model's probabilities err, by how much, and what the temperature makes of them."""
    confidence, accuracy = evaluation["mean_confidence_without_tta"], evaluation["accuracy_without_tta"]
    way = "under-confident" if confidence < accuracy else "over-confident"
    return [
        ("which way it errs", f"{way}: without TTA its mean confidence is {confidence:.1f}% for {accuracy:.1f}% "
                              f"accuracy"),
        ("calibration error (ECE, 15 bins)", f"{evaluation['calibration_error_without_tta']:.1f} points without TTA, "
                                             f"{evaluation['calibration_error']:.1f} with TTA, "
                                             f"{evaluation['calibration_error_calibrated']:.1f} after temperature "
                                             "scaling"),
        ("temperature", f"{evaluation['temperature']:g}, fitted on {fitted_on_words(evaluation)}: predict and the "
                        "ONNX card divide the logits by it (models/calibration.json, and inside "
                        "models/cifar10-model.pt, the registry's model), so the probabilities they give "
                        "mean what they say on images like these"),
    ]


def fitted_on_words(evaluation: dict) -> str:
    """Where the temperature was fitted, in words: the validation split, or the test split itself."""
    if evaluation["temperature_fitted_on"] == "validation":
        return "the validation split"
    return ("the test split (there is no validation split: a temperature changes no prediction, and the error after "
            "it is cross-fitted over two halves)")


def robustness_rows(robustness: dict) -> list[tuple[str, str]]:
    """The corruption grid in a few numbers; the heat map below has every cell."""
    interval = robustness["mean_corruption_accuracy_95"]
    best = max(robustness["corruption_accuracy"].items(), key=lambda item: item[1]["mean"])
    return [
        ("images", f"{robustness['images']:,} of the test split, class-balanced (robustness.images_per_class; 0: all "
                   "of them, for a figure comparable with published CIFAR-10-C results)"),
        ("clean", f"{robustness['clean_accuracy']:.2f}% (95%: {_interval(robustness['clean_accuracy_95'])})"),
        ("mean over 15 corruptions x 5 severities", f"{robustness['mean_corruption_accuracy']:.2f}% (95%: "
                                                    f"{_interval(interval)}, from these {robustness['images']:,} "
                                                    f"images), {robustness['mean_drop']:.2f} points below clean"),
        ("worst corruption", f"{robustness['worst_corruption'].replace('_', ' ')}: "
                             f"{robustness['worst_corruption_accuracy']:.2f}% over its 5 severities"),
        ("least harmful corruption", f"{best[0].replace('_', ' ')}: {best[1]['mean']:.2f}%"),
        ("frost", "the benchmark's own photographs" if robustness["frost_is_benchmark"] else
                  "a drawn texture, not the benchmark's photographs: frost, and so the mean, are not the benchmark's"),
    ]


def rubric_section(rubric: dict) -> Section:
    """The run against its assignment: one row per item, met or not, with the seed line it comes from."""
    if rubric["assignment"] is None:
        return Section("Assignment", "table", [("no rubric", rubric["note"])])
    rows = [(f"{item['kind']}: {item['name']}",
             f"{({True: 'met', False: 'NOT MET', None: 'cannot tell'})[item['passed']]}: {item['measured']} "
             f"(required {item['required']}; \"{item['source']}\")") for item in rubric["items"]]
    if rubric["not_checked"]:
        rows.append(("not checked", rubric["not_checked"]))
    return Section(f"Assignment {rubric['title']}: {rubric['passed']} of {rubric['total']} items met "
                   f"(../shared/seeds/{rubric['seed']})", "table", rows)


def report_sections(params: Params, train: dict, evaluation: dict, robustness: dict, details: dict, gradcam: dict,
                    model: nn.Module, rubric: dict) -> list[Section]:
    confused = [(f"{pair['actual']} taken for {pair['predicted']}", f"{pair['count']} images")
                for pair in details["most_confused"]]
    return [
        rubric_section(rubric),
        Section("Run summary", "table", run_summary(train, evaluation, gradcam, params.gradcam.faithfulness.fractions,
                                                      params.data, len(details["per_class_accuracy"]))),
        Section("Loss, accuracy and learning rate", "image", paths.CURVES_PNG),
        *([Section("LR range test", "image", paths.LR_FINDER_PNG)] if train["lr_finder_lr"] is not None else []),
        Section("Confusion matrix", "image", paths.CONFUSION_PNG),
        Section("Per-class results", "table", per_class_rows(details)),
        Section("Most confused classes", "table", confused or [("none", "no mistakes")]),
        Section("Calibration: is it as sure as it is right?", "table", calibration_rows(evaluation)),
        Section("Reliability diagram", "image", paths.RELIABILITY_PNG),
        Section("Robustness: accuracy under common corruptions (CIFAR-10-C)", "table", robustness_rows(robustness)),
        Section("Accuracy per corruption and severity", "image", paths.ROBUSTNESS_PNG),
        Section("What the corruptions look like", "image", paths.CORRUPTIONS_PNG),
        Section("Misclassified test images", "image", paths.GALLERY_PNG),
        *[Section(f"GradCAM at {name}, on the same images", "image", paths.GRADCAM_DIR / figure)
          for name, figure in zip(gradcam["layers"], gradcam["figures"])],
        Section("How faithful is GradCAM? (ROAD: hide pixels, refill them from their neighbours)", "image",
                paths.FAITHFULNESS_PNG),
        Section("Params", "pre", yaml.safe_dump(params.model_dump(), sort_keys=False)),
        Section("Model summary (torchsummary)", "pre", model_summary(model, params.data.image_size)),
    ]
