"""Training: steps lower the loss, the same seed gives the same run, an interrupted run resumes
to the same result, and a diverging loss stops at once."""
from __future__ import annotations

import re
from dataclasses import asdict

import pytest
import torch
import torch.nn.functional as F

from cifarlab.data.prepared import Prepared
from cifarlab.data.stats import Stats
from cifarlab.models import build_model
from cifarlab.train.optim import make_optimizer
from cifarlab.train.resume import load_resume_state
from cifarlab.train.run import run
from conftest import CLASSES, committed_params, make_arrays

STATS = Stats([0.5] * 3, [0.25] * 3)


def _params(**changes):
    return committed_params(**{"model": "tiny", "train.epochs": 2, "train.batch_size": 8, "train.seed": 3,
                               "evaluate.batch_size": 8, "train.scheduler.onecycle.max_lr": 0.05,
                               "train.scheduler.onecycle.peak_epoch": 1, **changes})


def _data():
    arrays = make_arrays(per_class_train=8, per_class_test=2)
    return Prepared(*arrays["train"], *arrays["test"], CLASSES)


def test_one_training_step_lowers_the_loss():
    torch.manual_seed(0)
    model = build_model("tiny", 3)
    images, labels = torch.randn(16, 3, 32, 32), torch.randint(0, 3, (16,))
    optimizer = make_optimizer(model, _params().train.optimizer)
    before = F.cross_entropy(model(images), labels)
    before.backward()
    optimizer.step()
    assert F.cross_entropy(model(images), labels).item() < before.item()


def _run(params, on_epoch_end=lambda history: None, **kwargs):
    result = run(params, _data(), STATS, on_epoch_end=on_epoch_end, device=torch.device("cpu"), **kwargs)
    return [asdict(r) for r in result.history], result


def test_same_seed_gives_the_same_history():
    first, result = _run(_params())
    assert len(first) == 2 and {"epoch", "train_loss", "test_acc", "lr"} <= set(first[0])
    again, result_again = _run(_params())
    weights, weights_again = result.model.state_dict(), result_again.model.state_dict()
    assert first == again
    assert all(torch.equal(weights[k], weights_again[k]) for k in weights)


class _Cut(Exception):
    pass


def test_resume_after_an_interruption_equals_an_uninterrupted_run(tmp_path):
    params = _params(**{"train.epochs": 3})
    whole, whole_result = _run(params)

    state = tmp_path / "state.pt"

    def cut_after_first(history):
        if len(history) == 1:
            raise _Cut
    with pytest.raises(_Cut):
        _run(params, cut_after_first, state_path=state)
    assert load_resume_state(state, "another run's fingerprint") is None
    assert torch.load(state, weights_only=True)["epoch"] == 1

    resumed, resumed_result = _run(params, state_path=state)
    assert resumed == whole
    whole_weights, resumed_weights = whole_result.model.state_dict(), resumed_result.model.state_dict()
    assert all(torch.equal(whole_weights[k], resumed_weights[k]) for k in whole_weights)
    assert not state.exists()


def test_nan_loss_stops_at_once_with_a_hint_and_keeps_the_best_so_far():
    history, result = _run(_params(**{"train.epochs": 3, "train.scheduler.onecycle.max_lr": 1e6}))
    assert re.search(r"epoch \d+ by batch \d+.*learning rate is probably too high", result.failure or "")
    assert len(history) < 3
