"""train.precision and the layout: auto lets the plan measure bf16 against fp32 only where the
hardware has bf16 natively (a GPU: bf16, else fp16), a named precision is checked against the
device, and a bf16 run is as repeatable as an fp32 one; DataLoader workers keep a run repeatable."""
from __future__ import annotations

import os
from dataclasses import asdict

import numpy as np
import pytest
import torch

from cifarlab.core.errors import UserError
from cifarlab.feed import device as devices
from cifarlab.feed.batches import resolve_workers, train_batches
from cifarlab.feed.device import resolve_precision, usable_precision
from cifarlab.plan.choose import precisions
from cifarlab.prepared import Prepared
from cifarlab.stats import Stats
from cifarlab.train.run import run
from conftest import CLASSES, default_params, make_arrays

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


@pytest.fixture
def bf16_cpu(monkeypatch):
    monkeypatch.setattr(devices, "_cpu_flags", lambda: frozenset({"avx512f", "avx512_bf16"}))


@pytest.fixture
def plain_cpu(monkeypatch):
    monkeypatch.setattr(devices, "_cpu_flags", lambda: frozenset({"avx2"}))


def test_auto_measures_bf16_against_fp32_on_a_bf16_cpu_and_a_named_precision_is_kept(bf16_cpu):
    assert precisions("auto", CPU) == ["bf16", "fp32"]
    assert precisions("fp32", CPU) == ["fp32"] and precisions("bf16", CPU) == ["bf16"]
    assert resolve_precision("fp32", CPU) == "fp32" and resolve_precision("bf16", CPU) == "bf16"


def test_without_native_bf16_auto_is_fp32_and_bf16_is_refused(plain_cpu):
    assert precisions("auto", CPU) == ["fp32"]
    with pytest.raises(UserError, match="train.precision = bf16 needs native bf16"):
        precisions("bf16", CPU)
    with pytest.raises(UserError, match="fp16 training needs a CUDA GPU"):
        resolve_precision("fp16", CPU)
    assert usable_precision("bf16", CPU) == "fp32"  # a bf16 checkpoint is scored in fp32 here


def test_cuda_logic_bf16_where_supported_else_fp16_with_loss_scaling(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert precisions("auto", CUDA) == ["bf16"]  # nothing to measure on a GPU
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert precisions("auto", CUDA) == ["fp16"] and resolve_precision("fp16", CUDA) == "fp16"
    assert devices.make_scaler(CPU, "fp16").is_enabled() and not devices.make_scaler(CPU, "bf16").is_enabled()
    assert devices.memory_format(CUDA) == devices.memory_format(CPU) == torch.channels_last


def _run(precision: str, workers: int | str = 0):
    arrays = make_arrays(per_class_train=8, per_class_test=2)
    data = Prepared(*arrays["train"], *arrays["test"], CLASSES)
    params = default_params(**{"model": "tiny", "data.val": 0, "train.epochs": 1, "train.batch_size": 8,
                                 "train.precision": precision, "train.workers": workers,
                                 "train.loader": "albumentations", "augment.hflip.alternate": False})
    # (the albumentations loader is the one that has workers)
    result = run(params, data, Stats([0.5] * 3, [0.25] * 3), device=CPU)
    return [asdict(row) for row in result.history], result


def test_a_bf16_run_is_repeatable_and_says_what_it_ran(bf16_cpu):
    first, result = _run("bf16")
    again, _ = _run("bf16")
    assert first == again and result.precision == "bf16" and result.layout == "channels_last"
    fp32, fp32_result = _run("fp32")
    assert fp32_result.precision == "fp32" and fp32 != first  # bf16 really ran: the numbers differ


def test_workers_keep_a_run_repeatable():
    first, _ = _run("fp32", workers=2)
    assert first == _run("fp32", workers=2)[0]


def _worker_batches(epoch: int) -> list[torch.Tensor]:
    """Two workers' batches of one image repeated: what each worker's augmentation made of it."""
    image = np.random.default_rng(0).integers(0, 256, (1, 32, 32, 3), dtype=np.uint8)
    stats = Stats([0.5] * 3, [0.25] * 3)
    batches = train_batches("albumentations", np.repeat(image, 16, axis=0), np.zeros(16, dtype=np.int64),
                            default_params().augment, stats, 8, 0, CPU, workers=2)
    batches.set_epoch(epoch)
    return [images for images, _ in batches]


def test_each_worker_and_epoch_augments_differently_and_repeatably():
    """Seeded from (seed, epoch, worker): the two workers do not repeat each other's crops and
    holes, a new epoch brings new ones, and the same epoch the same ones."""
    first, second = _worker_batches(1)  # batch 0 comes from worker 0, batch 1 from worker 1
    assert not torch.equal(first, second)
    assert not torch.equal(first, _worker_batches(2)[0])
    assert all(torch.equal(a, b) for a, b in zip(_worker_batches(1), (first, second)))


def test_auto_workers_leave_two_cores_to_training(monkeypatch):
    for cores, workers in ((2, 0), (8, 3), (16, 7)):
        monkeypatch.setattr(os, "cpu_count", lambda cores=cores: cores)
        assert resolve_workers("auto") == workers
    assert resolve_workers(3) == 3
