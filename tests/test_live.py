"""The per-epoch dvclive log: one step per epoch, the latest epoch in metrics.json, and a resumed
run continuing the same steps from its own history, whatever a crash left in the folder."""
from __future__ import annotations

import json
import math

import pandas as pd

from cifarlab.train.live import EpochLog
from cifarlab.train.loop import EpochResult, Progress


def _progress(epochs: int) -> Progress:
    rows = [EpochResult(epoch, 2.0 / epoch, 50.0 + epoch, math.nan, math.nan, 1.5 / epoch, 40.0 + epoch, 0.1 * epoch)
            for epoch in range(1, epochs + 1)]
    return Progress(history=rows)


def test_each_epoch_is_one_step_and_the_summary_holds_the_latest(tmp_path):
    log = EpochLog(tmp_path / "dvclive")
    for epochs in (1, 2, 3):
        log(_progress(epochs))
        summary = json.loads((tmp_path / "dvclive" / "metrics.json").read_text())
        assert summary["step"] == epochs and summary["train"]["acc"] == 50.0 + epochs
        assert "val" not in summary and summary["test"]["acc"] == 40.0 + epochs  # no validation split
    loss = pd.read_csv(tmp_path / "dvclive" / "plots" / "metrics" / "train" / "loss.tsv", sep="\t")
    assert loss["step"].tolist() == [1, 2, 3] and loss["loss"].tolist() == [2.0, 1.0, 2.0 / 3]
    val = pd.read_csv(tmp_path / "dvclive" / "plots" / "metrics" / "val" / "acc.tsv", sep="\t")
    assert val["acc"].isna().all()  # no validation split: gaps in the curve, not made-up numbers


def test_a_resumed_run_rebuilds_the_log_from_its_history(tmp_path):
    folder = tmp_path / "dvclive"
    EpochLog(folder)(_progress(2))
    with open(folder / "plots" / "metrics" / "train" / "loss.tsv", "a") as cut:
        cut.write("3\t0.6")  # a crash in the middle of writing epoch 3
    EpochLog(folder)(_progress(4))  # the resumed run, restored to epoch 3, finishing epoch 4
    loss = pd.read_csv(folder / "plots" / "metrics" / "train" / "loss.tsv", sep="\t")
    assert loss["step"].tolist() == [1, 2, 3, 4] and loss["loss"].tolist() == [2.0, 1.0, 2.0 / 3, 0.5]
    assert json.loads((folder / "metrics.json").read_text())["step"] == 4
