"""Per-epoch metrics through dvclive, DVC's own logger: a running experiment's latest epoch shows
in `dvc exp show` (dvclive/metrics.json) and its curves in `dvc plots` (dvclive/plots/metrics/).
The log is rebuilt from the run's own history when a run starts or resumes, so a resumed run
continues the same steps and a line cut short by a crash never outlives the next run."""
from __future__ import annotations

import math
from pathlib import Path

from dvclive import Live

from cifarlab.train.loop import Progress

SPLITS = ("train", "val", "test")  # val: NaN without a validation split; test: without train.test_curve


class EpochLog:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.live: Live | None = None
        self.logged = 0

    def __call__(self, progress: Progress) -> None:
        """Log the epochs of `progress` not logged yet, one dvclive step per epoch."""
        if self.live is None:  # starts the folder afresh, then takes in a resumed run's earlier epochs
            self.live = Live(str(self.folder), dvcyaml=None, save_dvc_exp=False)
        for row in progress.history[self.logged:]:
            self.live.step = row.epoch
            for split in SPLITS:
                self.live.log_metric(f"{split}/loss", getattr(row, f"{split}_loss"))
                self.live.log_metric(f"{split}/acc", getattr(row, f"{split}_acc"))
            self.live.log_metric("lr", row.lr)
        self.logged = len(progress.history)
        last = progress.history[-1]
        for split in SPLITS:  # a split that was not scored stays out of `dvc exp show` (its curve has gaps)
            if math.isnan(getattr(last, f"{split}_loss")):
                self.live.summary.pop(split, None)
        self.live.make_summary()
