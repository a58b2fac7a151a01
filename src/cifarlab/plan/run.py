"""The plan stage as one call: price the runs params.yaml allows on this machine, choose one,
and write the choice (plan/choice.json, the train stage's dep) apart from its expected cost
(plan/estimate.json), so that only another choice retrains."""
from __future__ import annotations

import importlib
import json
import time

import psutil
import torch
from torch import nn

from cifarlab.config import CHOICE_KEY, Params, ParamsError
from cifarlab.core import paths
from cifarlab.core.errors import set_key
from cifarlab.core.io import write_json
from cifarlab.feed.device import select_device
from cifarlab.models import source_digest, source_file
from cifarlab.models.registry import build_model, explained_layers, runs_at, trains_at_any_size
from cifarlab.plan.choose import budget_seconds, candidates, options, pick, table
from cifarlab.plan.cost import DataSizes
from cifarlab.plan.speeds import machine, remembered
from cifarlab.prepared import Prepared, load_prepared
from cifarlab.train.resume import fingerprint


def process_seconds() -> float:
    """Seconds since this process started: the interpreter and imports included."""
    return time.time() - psutil.Process().create_time()


# what stages/train.py imports (tests/test_plan.py checks that the plan makes all of them)
TRAIN_STAGE_IMPORTS = ("cifarlab.train.outputs", "cifarlab.train.run", "cifarlab.train.distributed")


def train_startup(device: torch.device, data_path=paths.PREPARED) -> tuple[Prepared, float]:
    """The prepared data, and the train stage's time before its model is built as this process
    measures it the first time it sees this machine and data size: the same interpreter, the
    train stage's imports (those the plan lacks, dvclive and matplotlib, are made and timed
    here), reading the data and hashing every image for the resume state."""
    imports = process_seconds()
    began = time.perf_counter()
    data = load_prepared(data_path)
    arrays = [data.x_train, data.y_train, data.x_val, data.y_val, data.x_test, data.y_test]
    key = json.dumps({"machine": machine(device), "startup": [array.shape for array in arrays]}, sort_keys=True)

    def measured() -> dict:
        for module in TRAIN_STAGE_IMPORTS:
            importlib.import_module(module)
        fingerprint([], arrays, nn.Identity())
        return {"seconds": imports + time.perf_counter() - began}
    return data, remembered(key, measured)[0]["seconds"]


CIFAR_IMAGES = {"train": 50_000, "test": 10_000}  # before the download: what data.source: cifar10 holds


def sizes_here(params: Params) -> tuple[DataSizes, float, str]:
    """For the tools run outside `dvc repro` (the estimate, the profiler): the data's sizes, the
    train stage's start-up and where both came from: the prepared data if the download stage has
    run, else CIFAR-10's sizes (or the subset's) and this process's own start-up."""
    if paths.PREPARED.is_file():
        data, startup = train_startup(select_device())
        return DataSizes(len(data.y_train), len(data.y_val), len(data.y_test), data.num_classes), startup, \
            str(paths.PREPARED)
    subset, val = params.data.subset, params.data.val
    sizes = DataSizes((subset.train or CIFAR_IMAGES["train"]) - val, val, subset.test or CIFAR_IMAGES["test"], 10)
    return sizes, process_seconds(), "CIFAR-10's sizes (no data/prepared.npz yet)"


def check_networks(params: Params, num_classes: int, image_size: int) -> None:
    """What params.yaml asks of each network it may train, checked on the network itself before
    anything trains: it builds for the data (your own is tried on a batch), gradcam.layers are
    its layers, and train.low_res trains only a network that takes smaller images."""
    low_res: dict[str, bool] = {}  # each network, and whether some option trains it at low resolution
    for (model, _, low), _ in options(params):
        low_res[model] = low_res.get(model, False) or low > 0
    for model, low in low_res.items():
        network = build_model(model, num_classes, image_size)
        if not runs_at(network, image_size):
            raise ParamsError(f"params.yaml: data.image_size = {image_size} is too small for {model}, which "
                              f"shrinks its maps below one pixel; {_smallest_words(network, image_size)}")
        explained_layers(params.gradcam.layers, network, image_size)
        if low and not trains_at_any_size(model):
            raise ParamsError(f"params.yaml: train.low_res trains at another image size, which {model} does not "
                              "take (a network says so with any_image_size = True); "
                              f"{set_key('train.low_res.epochs', '0')}")
        size = params.train.low_res.size
        if low and not runs_at(network, size):
            raise ParamsError(f"params.yaml: train.low_res.size = {size} is too small for {model}, which shrinks "
                              f"its maps below one pixel; {_smallest_words(network, size, 'train.low_res.size')}")


def _smallest_words(network: nn.Module, size: int, key: str = "data.image_size") -> str:
    """The smallest size above `size` the network takes, as the key to set (up to 512 px tried)."""
    smallest = next((larger for larger in range(size + 1, 513) if runs_at(network, larger)), None)
    return "no size up to 512 px works" if smallest is None else \
        f"it takes {smallest} px and more: {set_key(key, str(smallest))}"


def network_file(model: str) -> dict:
    """plan/choice.json's record of your network's file (nothing for the zoo's): train depends on
    plan/choice.json, so an edit of nets/<model>.py retrains it, and an edit of another file in
    nets/ retrains nothing."""
    path = source_file(model)
    return {} if path is None else {"network": {"file": path.as_posix(), "sha256": source_digest(model)}}


def plan(params: Params, device: torch.device) -> str:
    """Choose, write both files and return what to print."""
    data, startup = train_startup(device)
    check_networks(params, data.num_classes, data.x_train.shape[1])
    sizes = DataSizes(len(data.y_train), len(data.y_val), len(data.y_test), data.num_classes)
    priced = candidates(params, sizes, device, startup)
    elapsed = priced.plan_seconds
    chosen, line = pick(priced, params)
    write_json(paths.CHOICE, {CHOICE_KEY: chosen.choice.model_dump(), **network_file(chosen.params.model)})
    budget = budget_seconds(params)
    write_json(paths.PLAN_ESTIMATE, {
        "budget_minutes": params.plan.budget_minutes, "fits": elapsed + chosen.cost.total <= budget,
        "expected_minutes": round((elapsed + chosen.cost.total) / 60, 2),
        "expected_train_seconds": round(chosen.cost.train, 1),
        "expected_startup_seconds": round(chosen.cost.startup, 1), "plan_seconds": round(elapsed, 1),
        "machine": machine(device)})
    measured = "measured now" if any(c.measured for c in priced.candidates) else "this machine's speeds from the cache"
    return f"{table(priced, budget)}\n({measured}, {torch.get_num_threads()} threads)\n{line}"
