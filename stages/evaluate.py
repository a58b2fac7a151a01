"""Stage 4 — evaluate: score the checkpoint on the test split only (with and without test-time
augmentation), per-image predictions for later stages, and the confusion matrix (CSV and heatmap)."""
import cifarlab.core.interrupts  # noqa: F401  first: a Ctrl-C during the imports below ends in one line
from cifarlab.config import load_params
from cifarlab.core import paths
from cifarlab.core.errors import run_stage
from cifarlab.core.io import save_figure, write_csv, write_json
from cifarlab.evaluate import scoring
from cifarlab.evaluate.figures import confusion_figure
from cifarlab.feed.batches import eval_batches
from cifarlab.feed.device import select_device, usable_precision
from cifarlab.feed.inference import accuracy, predict
from cifarlab.models.checkpoint import checkpoint_stats, load_checkpoint
from cifarlab.prepared import load_prepared


def main() -> None:
    params = load_params()
    cfg, device = params.evaluate, select_device()
    data = load_prepared(paths.PREPARED)
    model, ckpt = load_checkpoint(paths.MODEL, device, params.model_choices(), data.classes)
    batches = eval_batches(data.x_test, data.y_test, checkpoint_stats(ckpt), cfg.batch_size, device, "device")
    precision = usable_precision(ckpt["precision"], device)
    logits, labels = predict(model, batches, device, precision)
    plain_accuracy = accuracy(logits, labels)
    logits = scoring.tta_logits(model, batches, device, logits, cfg.tta, precision)
    table = scoring.predictions_table(logits, labels, data.classes)
    matrix = scoring.confusion_matrix(table["actual_id"].to_numpy(), table["predicted_id"].to_numpy(), data.num_classes)
    metrics = {**scoring.summary_metrics(logits, labels), "tta": cfg.tta,
               "accuracy_without_tta": round(plain_accuracy, 4)}
    write_csv(paths.PREDICTIONS, table)
    write_csv(paths.CONFUSION_CSV, table[["actual", "predicted"]])
    save_figure(paths.CONFUSION_PNG, confusion_figure(matrix, data.classes))
    write_json(paths.CLASS_DETAILS, scoring.class_details(matrix, data.classes))
    write_json(paths.METRICS_EVAL, metrics)
    print(scoring.scored_line(metrics, data.num_classes, paths.METRICS_EVAL))


if __name__ == "__main__":
    run_stage(main)
