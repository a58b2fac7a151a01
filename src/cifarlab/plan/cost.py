"""What a whole `dvc repro` of one concrete run costs here, from its measured speed: the train
stage's start-up (the process, the model's set-up and the LR range test: all before the first
epoch), its steps (each epoch priced at the size it trains at) and the validation scored after
every epoch, then the stages after it, priced by the forward passes
they make over the data that will actually run."""
from __future__ import annotations

from dataclasses import dataclass

from cifarlab.config import Params
from cifarlab.feed.batches import steps_per_pass
from cifarlab.plan.speeds import Speed

TTA_PASSES = {"none": 1, "flip": 2, "flip_translate": 6}  # forward passes over the test split (evaluate/scoring.py)
# counts of the stages' own (gradcam/faithfulness.py ORDERS, robustness/corruptions.py), kept as numbers so
# this stage does not import scipy and PIL; tests/test_plan.py holds them equal
ROAD_ORDERS = 3  # ROAD scores each fraction removed in three orders: most relevant first, least, random
CORRUPTIONS = 15 * 5  # CIFAR-10-C: 15 corruptions at 5 severities
# Seconds of a `dvc repro` that no model inference accounts for: decoding the images, the
# statistics, generating the corruptions, ROAD's imputation, the figures, the report and the stages'
# start-up. The rest of the pipeline took 61-68 s on an Intel Xeon (bf16) and 108-118 s on the AVX2
# proxy (fp32), where 75 s plus the measured inference gave 123 s (docs/results.md).
FIXED_SECONDS = 75


@dataclass(frozen=True)
class DataSizes:
    """The images of the prepared data, split by split (a subset or a fine-tune's few photos as they are)."""
    train: int
    val: int
    test: int
    classes: int


@dataclass(frozen=True)
class Cost:
    startup: float  # the train stage before its first epoch: the process, the model's set-up, the LR range test
    train: float  # its epochs, with the validation scored after each
    rest: float  # every stage after train

    @property
    def total(self) -> float:
        return self.startup + self.train + self.rest


def cost(params: Params, speed: Speed, sizes: DataSizes, startup: float) -> Cost:
    """Seconds of `params` (concrete: a named model and its epochs) at `speed`; `startup`: the
    train stage's process here (imports, reading and hashing the data) before the model."""
    cfg = params.train
    steps = steps_per_pass(sizes.train, cfg.batch_size, cfg.processes, training=True)
    low = cfg.low_res.epochs
    step_seconds = (cfg.epochs - low) * speed.step_seconds + low * (speed.low_res_step_seconds or 0.0)
    scored = cfg.epochs * (sizes.val + (sizes.test if cfg.test_curve else 0))
    swept = cfg.scheduler.name == "onecycle" and cfg.scheduler.onecycle.max_lr == "auto"  # as choose_max_lr
    range_test = cfg.lr_finder.num_iter * speed.step_seconds if swept else 0.0  # at most: it may stop early
    train = steps * step_seconds + scored / speed.inference_images_per_s
    road = params.gradcam.faithfulness
    passes = (sizes.test * TTA_PASSES[params.evaluate.tta]
              + CORRUPTIONS * min(params.robustness.images_per_class * sizes.classes or sizes.test, sizes.test)
              + road.images * len(road.fractions) * ROAD_ORDERS * len(params.gradcam.layers))
    rest = FIXED_SECONDS + passes / speed.inference_images_per_s
    return Cost(startup + speed.setup_seconds + range_test, train, rest)
