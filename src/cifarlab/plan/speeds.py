"""This machine's measured speed for one training recipe, and the cache that keeps it. Speed is
measured once per machine (what decides it: the CPU's model and flags, the GPU, torch, the
threads) and per recipe (network, precision, batch path), so one machine plans alike run after
run and a second `dvc repro` measures nothing. The cache lives outside the project
($CIFARLAB_CACHE, else ~/.cache/cifarlab), so queued experiments in their own copies share it."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from cifarlab.config import Params
from cifarlab.core.io import immediately, write_json
from cifarlab.feed.device import autocast, describe
from cifarlab.stats import channel_stats
from cifarlab.train.clock import TIMED_STEPS, UNTIMED_STEPS
from cifarlab.train.run import DATA_INIT_IMAGES, built_model
from cifarlab.training_step import training_step

CACHE_ENV = "CIFARLAB_CACHE"
# The probe times the steps the train stage's own estimate reads (train.clock: the median of
# TIMED_STEPS after UNTIMED_STEPS), each on its own. The warm-up step builds the kernels and the
# optimiser's state (timed after a warm-up micro-batch alone, airbench94's first steps ran 35%
# slower than its training went on); the median drops a slow step: in a 30-step trace of
# airbench94 in bf16 on a 2-core Intel Xeon with AMX, two steps took 1.4x and 2x as long as those
# around them, and the mean of two steps had read 2.33 s where that run averaged 1.81 s.
INFERENCE_IMAGES = 500


@dataclass(frozen=True)
class Speed:
    step_seconds: float  # one optimiser step of train.batch_size images at data.image_size
    low_res_step_seconds: float | None  # the same at train.low_res.size; None: not measured
    inference_images_per_s: float  # scoring, in the same precision
    setup_seconds: float  # building the model as the train stage does before its first step (init from data, facts)
    measure_seconds: float  # what measuring it took: the plan's own cost on a machine it has not seen


def cache_file() -> Path:
    folder = os.environ.get(CACHE_ENV) or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "cifarlab"
    return Path(folder) / "speeds.json"


def _cpu() -> tuple[str, list[str]]:
    """The CPU's model name and feature flags (Linux); the platform's name elsewhere."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor() or platform.machine(), []
    field = {line.split(":", 1)[0].strip(): line.split(":", 1)[1].strip() for line in lines if ":" in line}
    return field.get("model name", platform.machine()), sorted(field.get("flags", "").split())


def machine(device: torch.device) -> dict:
    """What decides a training step's speed here, besides the recipe."""
    name, flags = _cpu()
    return {"cpu": name, "flags": hashlib.sha256(" ".join(flags).encode()).hexdigest()[:16],
            "device": describe(device), "torch": torch.__version__, "threads": torch.get_num_threads()}


def typical_epoch(params: Params) -> int:
    """The epoch whose step the probe times: the run's middle one. A network may train fewer
    parameters after its first epochs (airbench's whitening bias, see its start_epoch): on a 2-core
    Xeon (AMX, bf16) airbench94's epochs 4-10 ran 13% faster than its first three, so a probe of
    epoch 1 alone had priced the default's training 16% high. Epochs still auto (a tool timing
    one network's step): its first."""
    epochs = params.train.epochs
    return (epochs + 1) // 2 if isinstance(epochs, int) else 1


def recipe_key(params: Params, precision: str, device: torch.device, num_classes: int) -> str:
    """The cache key of a step's speed: the machine and every setting that changes a step's cost
    (not the LR or the seed, which change the step's values; the epochs only through the epoch
    whose step is timed)."""
    train = params.train
    recipe = {"machine": machine(device), "model": params.model, "classes": num_classes, "precision": precision,
              "epoch": typical_epoch(params),
              "image_size": params.data.image_size, "low_res_size": train.low_res.size,
              "batch_size": train.batch_size, "micro_batch": train.micro_batch, "loader": train.loader,
              "workers": train.workers, "optimizer": train.optimizer.name, "lookahead": train.lookahead.every,
              "compile": train.compile, "augment": params.augment.model_dump()}
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()


def _read_cache() -> dict:
    try:
        cached = json.loads(cache_file().read_text())
    except (OSError, ValueError):  # none yet, or damaged: measured again
        return {}
    return cached if isinstance(cached, dict) else {}


@contextlib.contextmanager
def _one_plan_at_a_time():
    """Hold the cache's lock: experiments queued side by side (`dvc queue start -j 2`) share the
    cache, and without it two plans' read-modify-writes could each drop the other's entry, so a
    recipe got measured again and its noise could flip a choice (and retrain); a second plan also
    waits for the first's measuring instead of timing its steps on cores the first is using."""
    from filelock import FileLock

    try:
        cache_file().parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(f"{cache_file()}.lock")
        lock.acquire()
    except OSError:  # a read-only home: no lock to take, and nothing will be kept either
        yield
        return
    try:
        yield
    finally:
        lock.release()


def remembered(key: str, compute: Callable[[], dict], usable: Callable[[dict], bool] = lambda value: True
               ) -> tuple[dict, bool]:
    """The cached value of `key` if there is a usable one, else compute() kept in the cache; and
    whether it was computed just now. Every figure the plan prints comes from here, so a machine's
    second plan writes what its first did."""
    with _one_plan_at_a_time():
        cached = _read_cache().get(key)
        if isinstance(cached, dict) and usable(cached):
            return cached, False
        value = compute()
        cache = _read_cache()
        cache[key] = value
        try:
            with immediately():  # kept even if the stage fails later
                write_json(cache_file(), cache)
        except OSError as err:  # a read-only home: measured again next time, nothing else changes
            print(f"note: could not keep the measured speed in {cache_file()} ({err.strerror}); set {CACHE_ENV}")
        return value, True


def speed(params: Params, precision: str, device: torch.device, low_res: bool, num_classes: int
          ) -> tuple[Speed, bool]:
    """The speed of `params`' recipe (a named model) in `precision` here, for data of `num_classes`,
    and whether it was measured just now (False: from the cache). `low_res`: also time a step at
    train.low_res.size."""
    fields = set(Speed.__dataclass_fields__)

    def usable(value: dict) -> bool:
        return set(value) == fields and (value["low_res_step_seconds"] is not None or not low_res)

    value, fresh = remembered(recipe_key(params, precision, device, num_classes),
                              lambda: asdict(measure(params, precision, device, low_res, num_classes)), usable)
    return Speed(**value), fresh


def measure(params: Params, precision: str, device: torch.device, low_res: bool, num_classes: int) -> Speed:
    """Time the train stage's model set-up, training's own step (model, layout, optimiser, batch
    path, micro-batches) and scoring, on synthetic images."""
    began = time.perf_counter()
    cfg = params.train
    size = params.data.image_size
    images = np.random.default_rng(0).integers(0, 256, (DATA_INIT_IMAGES, size, size, 3), dtype=np.uint8)
    stats = channel_stats(images)
    built = time.perf_counter()
    built_model(params.model, images, num_classes, stats, cfg.seed)
    setup = time.perf_counter() - built
    step = training_step(params.model_copy(update={"train": cfg.model_copy(update={"precision": precision})}),
                         device, num_classes, typical_epoch(params))
    sizes = [None, cfg.low_res.size] if low_res else [None]
    seconds = []
    for size in sizes:
        timed = step.batches(UNTIMED_STEPS + TIMED_STEPS, wrap=lambda batches: _TimedSteps(batches, device))
        step.run(timed, size)
        seconds.append(statistics.median(timed.seconds[UNTIMED_STEPS:]))
    rate = _inference_rate(step)
    return Speed(seconds[0], seconds[1] if low_res else None, rate, setup, time.perf_counter() - began)


def _sync(device: torch.device) -> None:
    """A GPU runs ahead of the host: wait for it before reading the clock."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class _TimedSteps:
    """Batches that keep each training step's wall time: from asking for its batch (the batch
    path's augmentation included) to the loop asking for the next."""

    def __init__(self, batches, device: torch.device) -> None:
        self.batches, self.device, self.seconds = batches, device, []

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        batches = iter(self.batches)
        while True:
            _sync(self.device)
            began = time.perf_counter()
            batch = next(batches, None)
            if batch is None:
                return
            yield batch
            _sync(self.device)
            self.seconds.append(time.perf_counter() - began)


def _inference_rate(step) -> float:
    model = step.model.eval()
    size = step.params.data.image_size
    batch = torch.randn(INFERENCE_IMAGES, 3, size, size, device=step.device).contiguous(
        memory_format=torch.channels_last)
    with torch.no_grad(), autocast(step.device, step.precision):
        model(batch)
        _sync(step.device)
        began = time.perf_counter()
        model(batch)
        _sync(step.device)
        seconds = time.perf_counter() - began
    model.train()
    return INFERENCE_IMAGES / seconds
