"""reports/model_card.md: what anyone about to use the model should know, from the run's own
figures, in the sections of Mitchell et al.'s "Model Cards for Model Reporting" (2019) as the
Hugging Face template arranges them, with the `model-index` YAML header the Hub reads."""
from __future__ import annotations

from typing import TYPE_CHECKING

import yaml

from cifarlab.report.sections import fitted_on_words
from cifarlab.rubric import MET

if TYPE_CHECKING:
    from cifarlab.config import Params

CIFAR10 = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def model_index(params: Params, train: dict, evaluation: dict, robustness: dict, classes: list[str]) -> dict:
    """The Hub's structured results: test accuracy with and without TTA, calibration after scaling,
    mean accuracy under the corruptions."""
    dataset = "cifar10" if sorted(classes) == CIFAR10 else "custom"
    tta = evaluation["tta"]
    metrics = [{"type": "accuracy", "value": evaluation["accuracy"], "name": f"test accuracy ({tta} TTA)"},
               {"type": "accuracy", "value": evaluation["accuracy_without_tta"], "name": "test accuracy (plain)"},
               {"type": "ece", "value": evaluation["calibration_error_calibrated"],
                "name": "expected calibration error after temperature scaling (points)"},
               {"type": "accuracy", "value": robustness["mean_corruption_accuracy"],
                "name": "mean accuracy under 15 CIFAR-10-C corruptions x 5 severities"}]
    return {"tags": ["image-classification", "pytorch", "dvc"], "datasets": [dataset], "metrics": ["accuracy"],
            "model-index": [{"name": f"cifarlab-{train['model']}", "results": [{
                "task": {"type": "image-classification", "name": "Image Classification"},
                "dataset": {"name": str(params.data.source), "type": dataset, "split": "test"},
                "metrics": metrics}]}]}


def rubric_lines(rubric: dict) -> list[str]:
    """The card's opening: the run against its course assignment, as a table, or that it has none."""
    if rubric["assignment"] is None:
        return ["## Assignment", f"No rubric: {rubric['note']}.", ""]
    rows = [f"| {item['kind']} | {item['name']} | {item['required']} | {item['measured']} | {MET[item['passed']]} |"
            for item in rubric["items"]]
    return [f"## Assignment: {rubric['title']}, {rubric['passed']} of {rubric['total']} items met",
            f"Items read from ../shared/seeds/{rubric['seed']} (metrics/rubric.json has the line of each).", "",
            "| kind | item | required | this run | met |", "|---|---|---|---|---|", *rows, ""]


def model_card(params: Params, train: dict, evaluation: dict, robustness: dict, details: dict, gradcam: dict,
               rubric: dict) -> str:
    classes = list(details["per_class_accuracy"])
    size = params.data.image_size
    acc, plain = evaluation["accuracy"], evaluation["accuracy_without_tta"]
    low, high = evaluation["accuracy_95"]["low"], evaluation["accuracy_95"]["high"]
    worst = min(details["per_class_accuracy"].items(), key=lambda item: item[1] if item[1] is not None else 101)
    pairs = ", ".join(f"{p['actual']} taken for {p['predicted']} ({p['count']})" for p in details["most_confused"][:3])
    layer = gradcam["most_faithful_layer"]
    lines = [
        "---", yaml.safe_dump(model_index(params, train, evaluation, robustness, classes), sort_keys=False).strip(),
        "---", "",
        f"# Model card: {train['model']} on {params.data.source}", "",
        *rubric_lines(rubric),
        "## Intended use",
        f"Classifying {size}x{size} RGB images into {len(classes)} classes ({', '.join(classes)}): coursework, "
        "experiments, and a starting point for fine-tuning (`train.init_from`). Larger photos are reduced to their "
        "centre square at this size, as the training images were.", "",
        "## Out of scope",
        "Any class not listed above (an image of one is still given one of these names); photos unlike the training "
        f"data (CIFAR-10's are small, centred, {size}x{size}; phone photos, drawings and screenshots differ); any "
        "decision about people or with consequences. Accuracy here is on the test split of the same source only.", "",
        "## Training data and procedure",
        f"{train['train_images']:,} training images ({train['val_images']:,} held out for validation) of "
        f"{params.data.source}; {train['model']} ({train['params']:,} parameters, {train['macs']:,} multiply-adds "
        f"per image), recipe `{params.recipe}`, {train['epochs']} epochs, {train['device']} in {train['precision']}, "
        f"{train['train_seconds']:.0f} s of training ({train['model_chosen_by']}).", "",
        "## Evaluation",
        f"Test accuracy {acc:.2f}% (95% Wilson interval {low:.2f}-{high:.2f}%) with {evaluation['tta']} test-time "
        f"augmentation, {plain:.2f}% without, on {evaluation['num_test_images']:,} test images, which this run neither "
        "trained on nor chose its checkpoint by (the recipes' own values were chosen as docs/results.md says). "
        f"Weakest class: {worst[0]} ({worst[1]}%). Most confused: {pairs or 'none'}.", "",
        "## Calibration",
        f"Without TTA the model's mean confidence is {evaluation['mean_confidence_without_tta']:.1f}% for "
        f"{plain:.1f}% accuracy; expected calibration error {evaluation['calibration_error_without_tta']:.1f} "
        f"points without TTA, {evaluation['calibration_error']:.1f} with TTA and "
        f"{evaluation['calibration_error_calibrated']:.1f} after temperature scaling (temperature "
        f"{evaluation['temperature']:g}, fitted on {fitted_on_words(evaluation)}; `cifarlab predict` and "
        "the ONNX card apply it).", "",
        "## Robustness",
        f"On {robustness['images']:,} test images under the 15 CIFAR-10-C corruptions (noise, blur, weather, digital) "
        f"at 5 severities each: {robustness['mean_corruption_accuracy']:.1f}% mean accuracy (95% interval "
        f"{robustness['mean_corruption_accuracy_95']['low']:.1f}-{robustness['mean_corruption_accuracy_95']['high']:.1f}%)"
        f", {robustness['mean_drop']:.1f} points below the same images clean; worst under "
        f"{robustness['worst_corruption'].replace('_', ' ')} ({robustness['worst_corruption_accuracy']:.1f}%). "
        + ("Frost blends in the benchmark's own frost photographs." if robustness["frost_is_benchmark"] else
           "Frost is a drawn texture, not the benchmark's photographs, so frost and the mean are not comparable "
           "with published CIFAR-10-C results."), "",
        "## Suspect labels",
        f"{evaluation['suspect_labels']:,} of the misclassified test images have a label that confident learning "
        "(cleanlab) finds unlikely; some of the model's counted mistakes may be labelling errors.", "",
        "## Explanations",
        f"GradCAM at {layer}, the most faithful layer by ROAD: hiding the pixels it marks lowers the predicted "
        f"class's probability by {gradcam['road_gap'][layer]:.2f} more than hiding the least relevant ones.", "",
        "## Limitations",
        f"One training run (seed {params.train.seed}); another seed moves test accuracy by a few tenths of a point. "
        f"{size}x{size} inputs keep little detail. Probabilities are calibrated on the same source only.", "",
    ]
    return "\n".join(lines)
