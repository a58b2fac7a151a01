"""The evaluate stage's per-image predictions as the later stages read them: the table's columns,
how a mistake is captioned, and when an accuracy is no better than guessing."""
from __future__ import annotations

# what the evaluate stage writes per test image, and misclassify and gradcam read back
PREDICTION_COLUMNS = ["index", "actual", "predicted", "actual_id", "predicted_id", "confidence", "label_suspect"]


def caption(row) -> str:
    """'predicted (confidence) / actual', as course assignments caption their galleries, and a
    warning on a mistake whose label confident learning finds suspect."""
    return f"{row.predicted} ({row.confidence:.2f}) / {row.actual}" + (
        "\nlabel may be wrong" if row.label_suspect else "")


def chance_words(accuracy: float, num_classes: int) -> str:
    """A warning when test accuracy is no better than guessing (within 5 points of 1 / classes):
    such a model learnt nothing, and its mistakes and maps explain nothing."""
    chance = 100 / num_classes
    if accuracy >= chance + 5:
        return ""
    return (f"{accuracy:.2f}% is chance level for {num_classes} classes ({chance:.0f}%): the model learnt nothing; "
            "train longer, on more images, or lower the learning rate")
