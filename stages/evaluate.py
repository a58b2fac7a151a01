"""Stage 4 — evaluate: the checkpoint on the test split only (TTA, confusion, calibration, suspect labels)."""
import cifarlab.core.interrupts  # noqa: F401  first: a Ctrl-C during the imports below ends in one line
from cifarlab.config import load_params
from cifarlab.core import paths
from cifarlab.core.errors import run_stage
from cifarlab.core.io import save_figure, together, write_csv, write_json
from cifarlab.evaluate import calibration, scoring
from cifarlab.evaluate.figures import confusion_figure
from cifarlab.feed.batches import eval_batches
from cifarlab.feed.device import select_device, usable_precision
from cifarlab.models.checkpoint import checkpoint_stats, load_checkpoint
from cifarlab.prepared import load_prepared


def main() -> None:
    params, data, device = load_params(), load_prepared(paths.PREPARED), select_device()
    cfg, (model, ckpt) = params.evaluate, load_checkpoint(paths.MODEL, device, params.model_choices(), data.classes)
    stats, precision = checkpoint_stats(ckpt), usable_precision(ckpt["precision"], device)
    batches = eval_batches(data.x_test, data.y_test, stats, cfg.batch_size, device, "device")
    scored = scoring.score(model, batches, device, precision, cfg.tta, data.classes)
    calibrated, diagram, temperature = calibration.assess(
        scored.plain, scored.logits, scored.labels,
        scoring.validation_logits(model, data, stats, cfg.batch_size, device, precision))
    metrics = {**scored.metrics, **calibrated, "suspect_labels": int(scored.table["label_suspect"].sum())}
    with together():
        write_csv(paths.PREDICTIONS, scored.table)
        write_csv(paths.CONFUSION_CSV, scored.table[["actual", "predicted"]])
        save_figure(paths.CONFUSION_PNG, confusion_figure(scored.matrix, data.classes))
        calibration.write(diagram, metrics, {**temperature, "weights_sha256": ckpt["digest"]})
        write_json(paths.CLASS_DETAILS, scored.details)
        write_json(paths.METRICS_EVAL, metrics)
    print(scoring.scored_line(metrics, data.num_classes, paths.METRICS_EVAL))


if __name__ == "__main__":
    run_stage(main)
