"""Stage 3 — train: fit params.model on the training split and keep the checkpoint that
train.checkpoint names (the last epoch, or the best on the validation split: the test split
decides nothing), the per-epoch history (CSV + PNG, rewritten every epoch so progress can be
watched), the LR range test and summary metrics. An interrupted run resumes from its last
finished epoch. With train.processes > 1 it starts that many copies of itself as data-parallel
processes (see cifarlab.distributed); started by torchrun, it is one of them."""
import sys
from dataclasses import asdict

import numpy as np
import pandas as pd

from cifarlab import distributed, paths
from cifarlab.config import load_params
from cifarlab.data.prepared import load_prepared
from cifarlab.data.stats import load_stats
from cifarlab.device import select_device
from cifarlab.errors import UserError, run_stage
from cifarlab.io import save_figure, write_csv, write_json
from cifarlab.models.checkpoint import save_checkpoint
from cifarlab.report.plots import curves_figure, lr_finder_figure
from cifarlab.train.loop import Progress
from cifarlab.train.run import run, train_metrics


def write_history(progress: Progress) -> None:
    """The per-epoch history and the LR of every step (x: epochs, epoch k spanning k-1 to k), CSVs
    and figure."""
    frame = pd.DataFrame([asdict(row) for row in progress.history])
    steps = len(progress.step_lrs)
    lrs = pd.DataFrame({"epoch": np.arange(steps) * len(progress.history) / max(steps, 1),  # where each step starts
                        "lr": progress.step_lrs})
    write_csv(paths.HISTORY, frame)
    write_csv(paths.STEP_LRS, lrs)
    save_figure(paths.CURVES_PNG, curves_figure(frame, lrs))


def main() -> None:
    params = load_params()
    group = distributed.from_env()
    device = select_device(group.local_rank)
    if params.train.processes > 1 and not distributed.launched():
        distributed.check_devices(params.train.processes, device, params.train.sync_bn)
        distributed.launch(params.train.processes, sys.executable, *sys.argv)
        return
    data, stats = load_prepared(paths.PREPARED), load_stats(paths.STATS)
    with distributed.joined(group, device):
        result = run(params, data, stats, paths.RESUME_STATE, on_epoch_end=write_history, device=device, group=group)
    if not group.is_main:
        return
    curve = {"lr": result.sweep.lrs, "loss": result.sweep.losses} if result.sweep else {"lr": [], "loss": []}
    write_csv(paths.LR_FINDER_CSV, pd.DataFrame(curve))
    save_figure(paths.LR_FINDER_PNG, lr_finder_figure(result.sweep, result.max_lr))
    if result.history:
        metrics = train_metrics(params, result, len(data.y_train), len(data.y_val))
        save_checkpoint(paths.MODEL, params.model, result.model.state_dict(), data.classes, stats,
                        result.kept_epoch, metrics["checkpoint"], result.precision)
    if result.failure:
        kept = f"; kept the checkpoint of epoch {result.kept_epoch} in {paths.MODEL}"
        raise UserError(result.failure + (kept if result.history else ""))
    write_json(paths.METRICS_TRAIN, metrics)
    print(f"kept epoch {result.kept_epoch} ({metrics['checkpoint']['chosen_by']}) -> {paths.MODEL}")


if __name__ == "__main__":
    run_stage(main)
