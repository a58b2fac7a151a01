"""What the train stage writes: the per-epoch log, LRs and curves (rewritten after every epoch, so a
running training can be watched), the LR range test, the kept checkpoint and metrics/train.json."""
from __future__ import annotations

from contextlib import nullcontext
from dataclasses import asdict

import numpy as np
import pandas as pd

from cifarlab.core import paths
from cifarlab.core.errors import UserError
from cifarlab.core.io import immediately, remove, save_figure, write_csv, write_json
from cifarlab.models.checkpoint import save_checkpoint
from cifarlab.prepared import Prepared
from cifarlab.stats import Stats
from cifarlab.train.figures import curves_figure, lr_finder_figure
from cifarlab.train.live import EpochLog
from cifarlab.train.loop import Progress
from cifarlab.train.run import TrainResult, train_metrics, training_facts


class EpochOutputs:
    """Rewritten after every epoch, so a running training can be watched: the dvclive log (the
    per-epoch metrics), the LR of every step (x: epochs, epoch k spanning k-1 to k) and the curves
    figure."""

    def __init__(self) -> None:
        self.log = EpochLog(paths.LIVE)

    def __call__(self, progress: Progress) -> None:
        self.log(progress)
        frame = pd.DataFrame([asdict(row) for row in progress.history])
        steps = len(progress.step_lrs)
        lrs = pd.DataFrame({"epoch": np.arange(steps) * len(progress.history) / max(steps, 1),  # where each starts
                            "lr": progress.step_lrs})
        write_csv(paths.STEP_LRS, lrs)
        save_figure(paths.CURVES_PNG, curves_figure(frame, lrs))


def write_results(params, result: TrainResult, data: Prepared, stats: Stats, model_rule: str) -> dict:
    """The LR range test's curve and figure, the checkpoint, the metrics and the training facts
    (returned, with `model_rule`: what chose the model). A run stopped by a NaN loss keeps the
    checkpoint of its last good epoch and ends in one
    error line."""
    curve = {"lr": result.sweep.lrs, "loss": result.sweep.losses} if result.sweep else {"lr": [], "loss": []}
    write_csv(paths.LR_FINDER_CSV, pd.DataFrame(curve))
    if result.sweep:
        save_figure(paths.LR_FINDER_PNG, lr_finder_figure(result.sweep, result.max_lr))
    else:
        remove(paths.LR_FINDER_PNG)
    if result.history:
        metrics = train_metrics(params, result, len(data.y_train), len(data.y_val))
        facts = {**training_facts(params, result, len(data.y_val), model_rule),
                 "source_images": dict(zip(("train", "test"), data.source_sizes))}
        with immediately() if result.failure else nullcontext():  # kept although the stage fails
            save_checkpoint(paths.MODEL, params.model, result.model.state_dict(), data.classes, stats,
                            result.kept_epoch, facts["checkpoint"], result.precision, data.x_train.shape[1])
    if result.failure:
        kept = f"; kept the checkpoint of epoch {result.kept_epoch} in {paths.MODEL}"
        raise UserError(result.failure + (kept if result.history else ""))
    write_json(paths.METRICS_TRAIN, metrics)
    write_json(paths.TRAINING, facts)
    return facts
