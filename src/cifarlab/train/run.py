"""The training run as one library call, used by the train stage, the tests and the benchmark:
seeding, model and layout, batches, the LR range test, resume, the loop, and the best weights.
In a data-parallel run (`group`), rank 0 alone runs the LR range test, reads and writes the
resume state and scores, and the others receive what it decides, all through the group's seam
(say, main_only, decided_by_main), so the run reads the same on one process as on many."""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import psutil
import torch
from torch import nn

from cifarlab.core.io import immediately
from cifarlab.facts import Untraceable, field_words, layer_kinds, macs_per_image, parameter_count, receptive_field
from cifarlab.feed.batches import eval_batches, resolve_workers, train_batches
from cifarlab.feed.device import describe, make_scaler, memory_format, resolve_precision, select_device
from cifarlab.models.registry import build_model
from cifarlab.prepared import Prepared
from cifarlab.stats import Stats
from cifarlab.train.distributed import SINGLE, DataParallel, Group, check_batch_split
from cifarlab.train.init_from import start_from
from cifarlab.train.lookahead import Lookahead
from cifarlab.train.loop import EpochResult, Progress, fit
from cifarlab.train.lr_finder import RangeTest, choose_max_lr
from cifarlab.train.optim import make_optimizer
from cifarlab.train.resume import fingerprint, load_resume_state, restore, save_state
from cifarlab.train.schedule import Schedule, onecycle_peak

if TYPE_CHECKING:
    from cifarlab.config import Params, TrainConfig

DATA_INIT_IMAGES = 5000  # a data-initialised layer sees this many training images (as airbench)


@dataclass
class TrainResult:
    model: nn.Module  # holding the kept weights (train.checkpoint)
    history: list[EpochResult]
    step_lrs: list[float]  # the LR of every optimiser step
    kept_epoch: int
    best_val_acc: float | None  # None without a validation split
    best_val_epoch: int
    max_lr: float | None
    sweep: RangeTest | None
    facts: dict  # parameters, MACs per image, receptive field
    device: str
    precision: str  # fp32, bf16 or fp16: what train.precision resolved to here
    layout: str  # channels_last or contiguous
    processes: int  # data-parallel processes that trained it
    train_seconds: float  # the training steps of every epoch, resumed runs included
    epoch_seconds: float  # whole epochs, with validation and test scoring
    failure: str | None  # set when a NaN/inf loss stopped training early
    estimated_seconds: float | None = None  # what its first steps said the whole training would take
    started_from: dict | None = None  # train.init_from's checkpoint and its weights digest; None: from scratch
    startup_seconds: float | None = None  # from the process's start to its first training step


def run(params: Params, data: Prepared, stats: Stats, state_path: Path | None = None,
        on_epoch_end: Callable[[Progress], None] = lambda progress: None,
        device: torch.device | None = None, group: Group = SINGLE) -> TrainResult:
    """Train params.model on `data` as params.train says. With `state_path`, the state is saved
    after every epoch and a matching saved state is resumed from; it is deleted on success. In a
    data-parallel run, call it on every process of `group` (joined already)."""
    cfg = params.train
    check_batch_split(cfg.batch_size, group)
    device = device or select_device(group.local_rank)
    state_path = group.main_only(lambda: state_path)
    model, facts = built_model(params.model, data.x_train, data.num_classes, stats, cfg.seed)
    started_from = None
    if cfg.init_from:
        line, digest = start_from(model, cfg.init_from, params.model, data.classes, data.x_train.shape[1])
        group.say(line)
        started_from = {"checkpoint": cfg.init_from, "weights_sha256": digest}
    model = model.to(device, memory_format=memory_format(device))
    precision = resolve_precision(cfg.precision, device)
    layout = "channels_last" if memory_format(device) == torch.channels_last else "contiguous"
    group.say(f"model {params.model}: {facts['params']:,} parameters, {facts['macs']:,} MACs/image, receptive "
              f"field {field_words(facts)}; on {describe(device)} in {precision}, {layout}"
              + (f"; {group.world} processes" if group.active else ""))

    def batches(rank: int, world: int):
        return train_batches(cfg.loader, data.x_train, data.y_train, params.augment, stats, cfg.batch_size, cfg.seed,
                             device, resolve_workers(cfg.workers), rank, world)

    train = batches(group.rank, group.world)
    val, test = group.main_only(lambda: _scoring_batches(data, stats, cfg, device), (None, None))
    if cfg.compile:
        model.compile()
    optimizer = make_optimizer(model, cfg.optimizer, cfg.batch_size)
    key = None
    if state_path is not None:  # the fingerprint hashes every image: only worth it when a state can be resumed
        key = fingerprint([params.model, params.augment.model_dump(), cfg.model_dump(), stats.mean, stats.std],
                          [data.x_train, data.y_train, data.x_val, data.y_val, data.x_test, data.y_test], model)
    state = group.decided_by_main(lambda: _saved_state(state_path, key))
    if state is None:  # the range test runs on whole global batches, as one process would
        max_lr, sweep = group.decided_by_main(lambda: choose_max_lr(
            cfg.scheduler, cfg.lr_finder, model, optimizer, batches(0, 1) if group.active else train, device,
            precision))
    else:
        max_lr, sweep = state["extras"]["max_lr"], _sweep(state["extras"]["sweep"])
    if len(data.y_val) > len(data.y_train):
        group.say(f"note: each epoch scores {len(data.y_val):,} validation images for {len(data.y_train):,} training "
                  "images, most of its time; for a quick run, lower data.val with the subset")
    peak = cfg.scheduler.onecycle.peak_epoch
    moved = onecycle_peak(peak, cfg.epochs)
    if cfg.scheduler.name == "onecycle" and moved != peak:
        group.say(f"note: train.scheduler.onecycle.peak_epoch = {peak:g} is not before the end of "
                  f"{cfg.epochs} epochs; OneCycle peaks at epoch {moved:g} instead")
    schedule = Schedule(optimizer, cfg.scheduler, cfg.epochs, len(train), max_lr, cfg.optimizer.lr)
    progress = Progress()
    if state is not None:
        progress = restore(state, model, optimizer, schedule)
        group.say(f"resuming after epoch {state['epoch']} of {cfg.epochs}")
    lookahead = Lookahead(model, cfg.lookahead, cfg.epochs * len(train)) if cfg.lookahead.every else None
    if lookahead is not None and state is not None:
        lookahead.load_state_dict(state["extras"]["lookahead"])
    trainer = DataParallel(model, device, cfg.sync_bn) if group.active else None

    def epoch_done(progress: Progress) -> None:
        with immediately():  # what an interrupted run resumes from, and what a running one shows
            if state_path is not None:
                save_state(state_path, key, model, optimizer, schedule, progress,
                           {"max_lr": max_lr, "sweep": None if sweep is None else vars(sweep),
                            "lookahead": None if lookahead is None else lookahead.state_dict()})
            group.main_only(lambda: on_epoch_end(progress))

    startup = time.time() - psutil.Process().create_time()  # what the plan's estimate of the start-up is checked by
    progress = fit(model, optimizer, schedule, make_scaler(device, precision), train, val, test, cfg.epochs, device,
                   progress, epoch_done, cfg.checkpoint, cfg.label_smoothing, precision, group, trainer,
                   None if lookahead is None else lookahead.after_step, cfg.micro_batch,
                   (cfg.low_res.size, cfg.low_res.epochs, data.x_train.shape[1]))
    if progress.kept_weights is not None:
        model.load_state_dict(progress.kept_weights)
    if progress.failure is None and state_path is not None:
        state_path.unlink(missing_ok=True)
    return TrainResult(model, progress.history, progress.step_lrs, progress.kept_epoch,
                       progress.best_val_acc if val is not None else None, progress.best_val_epoch,
                       max_lr, sweep, facts, describe(device), precision, layout, group.world,
                       progress.train_seconds, progress.epoch_seconds, progress.failure, progress.estimated_seconds,
                       started_from, startup)


def built_model(name: str, images: np.ndarray, num_classes: int, stats: Stats, seed: int) -> tuple[nn.Module, dict]:
    """The model as the seed initialises it (from the training `images` where it starts from the
    data), and its facts: parameters, MACs per image, receptive field. The plan times this too: it
    is most of the train stage's start-up after the imports."""
    torch.manual_seed(seed)
    model = build_model(name, num_classes, images.shape[1])
    init_from_data(model, images, stats, seed)
    facts = {"params": parameter_count(model), "macs": macs_per_image(model, images.shape[1]),
             "layer_kinds": layer_kinds(model)}
    try:
        facts["receptive_field"] = receptive_field(model)
    except Untraceable as why:  # it still trains; the field is marked unknown, and why
        facts["receptive_field"], facts["receptive_field_unknown"] = None, str(why)
    return model, facts


def _scoring_batches(data: Prepared, stats: Stats, cfg: TrainConfig, device: torch.device) -> tuple:
    """Validation batches (None without a split) and test batches (None unless train.test_curve)."""
    val = eval_batches(data.x_val, data.y_val, stats, cfg.batch_size, device, cfg.loader) if len(data.y_val) else None
    test = eval_batches(data.x_test, data.y_test, stats, cfg.batch_size, device, cfg.loader) if cfg.test_curve else None
    return val, test


def _saved_state(state_path: Path | None, key: str | None) -> dict | None:
    """The saved state this run can resume from, if any; a state of another run is ignored, saying so."""
    if state_path is None:
        return None
    state = load_resume_state(state_path, key)
    if state is None and state_path.is_file():
        print(f"ignoring {state_path}: saved by a run with other params, data or model code; starting over",
              flush=True)
    return state


def init_from_data(model: nn.Module, images: np.ndarray, stats: Stats, seed: int) -> None:
    """Hand a model that sets weights from the data (an init_from_data method) normalised
    training images: a sample fixed by the seed, so the initial weights are reproducible."""
    if not hasattr(model, "init_from_data"):
        return
    pick = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:DATA_INIT_IMAGES]
    batch = torch.from_numpy(images[np.sort(pick.numpy())]).permute(0, 3, 1, 2).float() / 255
    mean, std = (torch.tensor(values).view(1, -1, 1, 1) for values in (stats.mean, stats.std))
    model.init_from_data((batch - mean) / std)


def _sweep(saved: dict | None) -> RangeTest | None:
    return None if saved is None else RangeTest(**saved)


def train_metrics(params: Params, result: TrainResult, train_images: int, val_images: int) -> dict:
    """metrics/train.json: the numbers runs are compared by (size, speed, validation scores). No
    test accuracy: the evaluate stage alone reports that, as the result."""
    last = result.history[-1]
    return {
        "network": params.model, **result.facts, "epochs": params.train.epochs, "checkpoint_epoch": result.kept_epoch,
        "train_images": train_images, "val_images": val_images,
        "best_val_acc": None if result.best_val_acc is None else round(result.best_val_acc, 4),
        "best_val_epoch": result.best_val_epoch if val_images else None,
        "final_train_acc": round(last.train_acc, 4),
        "final_val_acc": None if math.isnan(last.val_acc) else round(last.val_acc, 4),
        "max_lr": result.max_lr, "lr_finder_lr": result.sweep.suggested_lr if result.sweep else None,
        "train_seconds": round(result.train_seconds, 2),
        "epoch_seconds": round(result.epoch_seconds, 2),
        "train_images_per_s": round(len(result.history) * train_images / result.train_seconds, 1),
    }


def training_facts(params: Params, result: TrainResult, val_images: int, model_rule: str) -> dict:
    """models/training.json: how the model was trained, in words (where, in what precision, why
    this epoch): what the report shows and `dvc exp show` need not."""
    if params.train.checkpoint == "best_val":
        chosen_by = f"best validation accuracy ({val_images} held-out training images)"
    else:
        chosen_by = "last epoch" + ("" if val_images else "; no validation split (data.val = 0)")
    return {
        "model": params.model, "model_chosen_by": model_rule,
        "device": result.device, "precision": result.precision, "layout": result.layout,
        "processes": result.processes, "threads": torch.get_num_threads(), "started_from": result.started_from,
        "estimated_train_seconds": None if result.estimated_seconds is None else round(result.estimated_seconds, 1),
        "startup_seconds": None if result.startup_seconds is None else round(result.startup_seconds, 1),
        "checkpoint": {"rule": params.train.checkpoint, "epoch": result.kept_epoch, "chosen_by": chosen_by},
    }
