"""Training: steps lower the loss, the same seed gives the same run, an interrupted run resumes
to the same result, and a diverging loss stops at once."""
from __future__ import annotations

import re
from dataclasses import asdict

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cifarlab.models.registry import build_model
from cifarlab.prepared import Prepared
from cifarlab.stats import Stats
from cifarlab.train.loop import NonFiniteLoss, _check_finite
from cifarlab.train.optim import make_optimizer
from cifarlab.train.resume import fingerprint, load_resume_state
from cifarlab.train.run import run
from conftest import CLASSES, PLAIN_RECIPE, default_params, make_arrays

STATS = Stats([0.5] * 3, [0.25] * 3)


PLAIN = {**PLAIN_RECIPE, "model": "tiny", "data.val": 3, "train.epochs": 2, "train.batch_size": 8,
         "train.seed": 3, "evaluate.batch_size": 8, "train.scheduler.onecycle.max_lr": 0.05,
         "train.scheduler.onecycle.peak_epoch": 1}


def _params(**changes):
    return default_params(**{**PLAIN, **changes})


def _data(val: int = 3, test_labels=None):
    """24 training images (`val` of them held out for validation) and 6 test images."""
    arrays = make_arrays(per_class_train=8, per_class_test=2)
    (x, y), (x_test, y_test) = arrays["train"], arrays["test"]
    held_out = np.arange(len(y)) % (len(y) // val) == 0 if val else np.zeros(len(y), bool)
    return Prepared(x[~held_out], y[~held_out], x_test, y_test if test_labels is None else test_labels, CLASSES,
                    x[held_out], y[held_out])


def test_one_training_step_lowers_the_loss():
    torch.manual_seed(0)
    model = build_model("tiny", 3)
    images, labels = torch.randn(16, 3, 32, 32), torch.randint(0, 3, (16,))
    optimizer = make_optimizer(model, _params().train.optimizer, 16)
    before = F.cross_entropy(model(images), labels)
    before.backward()
    optimizer.step()
    assert F.cross_entropy(model(images), labels).item() < before.item()


def _run(params, on_epoch_end=lambda progress: None, data=None, **kwargs):
    result = run(params, data or _data(), STATS, on_epoch_end=on_epoch_end, device=torch.device("cpu"), **kwargs)
    return [asdict(r) for r in result.history], result


def _weights_equal(a, b) -> bool:
    a, b = a.model.state_dict(), b.model.state_dict()
    return all(torch.equal(a[k], b[k]) for k in a)


def test_same_seed_gives_the_same_history():
    first, result = _run(_params())
    assert len(first) == 2 and {"epoch", "train_loss", "val_acc", "test_acc", "lr"} <= set(first[0])
    again, result_again = _run(_params())
    assert first == again
    assert _weights_equal(result, result_again)


def test_test_labels_decide_nothing():
    """Permuting the test labels changes the displayed test scores and nothing else: the same
    weights, the same checkpoint epoch, with the plateau schedule and best_val checkpoints too."""
    params = _params(**{"train.epochs": 4, "train.checkpoint": "best_val", "train.scheduler.name": "plateau",
                        "train.scheduler.plateau.patience": 0})
    data = _data()
    _, honest = _run(params, data=data)
    history, shuffled = _run(params, data=_data(test_labels=(data.y_test + 1) % 3))  # every label changed
    assert _weights_equal(honest, shuffled) and honest.kept_epoch == shuffled.kept_epoch
    assert [row.test_loss for row in honest.history] != [row["test_loss"] for row in history]


def test_checkpoint_last_keeps_the_final_weights_and_best_val_the_best_epoch():
    params = _params(**{"train.epochs": 4})
    history, last = _run(params)
    assert last.kept_epoch == 4
    _, best = _run(_params(**{"train.epochs": 4, "train.checkpoint": "best_val"}))
    val = [row["val_acc"] for row in history]
    assert best.kept_epoch == 1 + val.index(max(val)) == best.best_val_epoch


def test_without_a_validation_split_the_last_epoch_is_kept():
    history, result = _run(_params(**{"train.epochs": 2, "data.val": 0}), data=_data(val=0))
    assert result.kept_epoch == 2 and result.best_val_acc is None
    assert all(np.isnan(row["val_acc"]) for row in history)


class _Cut(Exception):
    pass


def test_resume_after_an_interruption_equals_an_uninterrupted_run(tmp_path):
    params = _params(**{"train.epochs": 3})
    whole, whole_result = _run(params)

    state = tmp_path / "state.pt"

    def cut_after_first(progress):
        if len(progress.history) == 1:
            raise _Cut
    with pytest.raises(_Cut):
        _run(params, cut_after_first, state_path=state)
    assert load_resume_state(state, "another run's fingerprint") is None
    assert torch.load(state, weights_only=True)["epoch"] == 1

    resumed, resumed_result = _run(params, state_path=state)
    assert resumed == whole and resumed_result.step_lrs == whole_result.step_lrs
    assert _weights_equal(whole_result, resumed_result)
    assert not state.exists()


def test_a_state_saved_by_another_model_definition_is_ignored_with_a_notice(tmp_path, capsys):
    params = _params(**{"train.epochs": 2})
    state = tmp_path / "state.pt"

    def cut(progress):
        raise _Cut
    with pytest.raises(_Cut):
        _run(params, cut, state_path=state)
    saved = torch.load(state, weights_only=True)
    saved["fingerprint"] = "a run of an older model definition"
    torch.save(saved, state)
    history, _ = _run(params, state_path=state)
    assert len(history) == 2 and "ignoring" in capsys.readouterr().out


def test_the_lr_of_every_step_is_recorded_so_the_onecycle_shape_shows():
    """21 training images in batches of 8: 3 steps an epoch; OneCycle peaks after epoch 1."""
    history, result = _run(_params(**{"train.epochs": 3}))
    lrs = result.step_lrs
    assert len(lrs) == 9 and [row["lr"] for row in history] == lrs[::3]
    assert lrs[0] == pytest.approx(0.05 / 25) and int(np.argmax(lrs)) == 3 and lrs[3] == pytest.approx(0.05)
    assert all(a > b for a, b in zip(lrs[3:], lrs[4:]))  # annealing after the peak


def test_the_fingerprint_follows_the_model_definition():
    """A state saved before a layer changed shape, or whose initial weights came out otherwise,
    must not resume: its fingerprint differs."""
    arrays = [np.zeros((2, 32, 32, 3), np.uint8)]

    def seeded(seed=0):
        torch.manual_seed(seed)
        return build_model("tiny", 3)
    model = seeded()
    same = fingerprint(["settings"], arrays, seeded())
    assert fingerprint(["settings"], arrays, model) == same
    assert fingerprint(["settings"], arrays, seeded(1)) != same
    model.head[-1] = torch.nn.Linear(96, 3, bias=False)  # a changed classifier layer
    assert fingerprint(["settings"], arrays, model) != same


def test_nan_loss_stops_at_once_with_a_hint_and_keeps_the_best_so_far():
    history, result = _run(_params(**{"train.epochs": 3, "train.scheduler.onecycle.max_lr": 1e6}))
    assert re.search(r"epoch \d+,? (by )?batch \d+.*learning rate is probably too high", result.failure or "")
    assert len(history) < 3


def test_a_loss_that_explodes_without_overflowing_stops_the_run():
    """Seen: a loss from 4.6 to 7.6e9, finite all along, and the run exited as a success."""
    _check_finite(900.0, 450.0, 10, 1, 3)  # an early overshoot a short run recovers from: training goes on
    with pytest.raises(NonFiniteLoss, match=r"training diverged: the loss reached 7.6e\+09 in epoch 2, batch 5, "
                                            r"over 2302.6 \(1000x a uniform guess's ln\(10\)\).*too high"):
        _check_finite(1e10, 7.6e9, 10, 2, 5)
    with pytest.raises(NonFiniteLoss, match="NaN/inf in epoch 1 by batch 1"):
        _check_finite(float("nan"), 2.0, 10, 1, 1)


def test_a_validation_split_larger_than_the_training_split_is_pointed_out(capsys):
    _run(_params(**{"train.epochs": 1}), data=_data(val=12))  # 12 held out, 12 left to train on
    assert "note: each epoch scores" not in capsys.readouterr().out
    data = _data(val=12)
    data.x_train, data.y_train = data.x_train[::2], data.y_train[::2]
    _run(_params(**{"train.epochs": 1}), data=data)
    assert "note: each epoch scores 12 validation images for 6 training images" in capsys.readouterr().out
