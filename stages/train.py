"""Stage 3 — train: fit params.model and keep its best checkpoint, the per-epoch history (CSV +
PNG, rewritten every epoch so progress can be watched), the LR range test and summary metrics.
An interrupted run resumes from its last finished epoch."""
from dataclasses import asdict

import pandas as pd

from cifarlab import paths
from cifarlab.config import load_params
from cifarlab.data.prepared import load_prepared
from cifarlab.data.stats import load_stats
from cifarlab.errors import UserError, run_stage
from cifarlab.io import save_figure, write_csv, write_json
from cifarlab.models.checkpoint import save_checkpoint
from cifarlab.report.plots import curves_figure, lr_finder_figure
from cifarlab.train.run import run


def write_history(history) -> None:
    frame = pd.DataFrame([asdict(row) for row in history])
    write_csv(paths.HISTORY, frame)
    save_figure(paths.CURVES_PNG, curves_figure(frame))


def main() -> None:
    params = load_params()
    data, stats = load_prepared(paths.PREPARED), load_stats(paths.STATS)
    result = run(params, data, stats, paths.RESUME_STATE, on_epoch_end=write_history)
    sweep = result.sweep
    curve = {"lr": sweep.lrs, "loss": sweep.losses} if sweep else {"lr": [], "loss": []}
    write_csv(paths.LR_FINDER_CSV, pd.DataFrame(curve))
    save_figure(paths.LR_FINDER_PNG, lr_finder_figure(sweep, result.max_lr))
    if result.history:
        save_checkpoint(paths.MODEL, params.model, result.model.state_dict(), data.classes, stats,
                        result.best_epoch, {"split": "test", "accuracy": result.best_acc})
    if result.failure:
        kept = f"; kept the best checkpoint so far (epoch {result.best_epoch}) in {paths.MODEL}"
        raise UserError(result.failure + (kept if result.history else ""))
    last = result.history[-1]
    write_json(paths.METRICS_TRAIN, {
        "model": params.model, **result.facts, "device": result.device, "epochs": params.train.epochs,
        "best_test_acc": result.best_acc, "best_epoch": result.best_epoch,
        "final_train_acc": last.train_acc, "final_test_acc": last.test_acc,
        "max_lr": result.max_lr, "lr_finder_lr": sweep.suggested_lr if sweep else None,
        "train_seconds": round(result.seconds, 2),
        "train_images_per_s": round(params.train.epochs * len(data.y_train) / result.seconds, 1),
    })
    print(f"best test accuracy {result.best_acc:.2f}% at epoch {result.best_epoch} -> {paths.MODEL}")


if __name__ == "__main__":
    run_stage(main)
