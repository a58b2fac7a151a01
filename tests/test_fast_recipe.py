"""The fast default recipe's parts: the whitening initialisation, the lookahead average,
alternating flips, reflect-filled translation, the decoupled optimiser units, the linear
schedule's exact shape, and a resumed run with all of them on equal to an uninterrupted one."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cifarlab.conf import compose
from cifarlab.config import AugmentConfig, ParamsError, TrainConfig, parse_params
from cifarlab.feed.batches import DeviceBatches
from cifarlab.feed.device_augment import augment_batch
from cifarlab.models.airbench import WHITEN_BIAS_EPOCHS
from cifarlab.models.registry import build_model
from cifarlab.prepared import Prepared
from cifarlab.stats import Stats
from cifarlab.train.lookahead import Lookahead
from cifarlab.train.optim import make_optimizer, norm_biases
from cifarlab.train.resume import load_resume_state
from cifarlab.train.run import run
from cifarlab.train.schedule import Schedule
from conftest import CLASSES, default_params, default_params_dict, make_arrays

CPU = torch.device("cpu")
STATS = Stats([0.5] * 3, [0.25] * 3)


def test_whitening_decorrelates_training_patches_to_unit_variance():
    torch.manual_seed(0)
    model = build_model("airbench94", 10)
    # correlated channels of different scales, as in real images
    base = torch.randn(200, 1, 32, 32)
    images = torch.cat([base, 0.5 * base + torch.randn(200, 1, 32, 32), 3 * torch.randn(200, 1, 32, 32)], 1)
    model.init_from_data(images)
    out = model.whiten(images) - model.whiten.bias.view(1, -1, 1, 1)
    directions = out.shape[1] // 2
    flat = out[:, :directions].permute(0, 2, 3, 1).reshape(-1, directions)
    covariance = flat.T @ flat / len(flat)
    assert torch.allclose(covariance, torch.eye(directions), atol=0.01)
    assert torch.equal(out[:, directions:], -out[:, :directions])  # both signs of each direction
    assert not model.whiten.weight.requires_grad


def test_whitening_filters_are_the_record_s_eigen_decomposition_of_the_patch_covariance():
    """Against the record's rule (airbench94_muon.py, init_whiten) computed here with numpy in
    float64: the uncentred covariance of every 2x2 patch, its eigenvectors scaled by
    1 / sqrt(eigenvalue + 5e-4), largest first, then the same filters negated. An eigenvector's
    sign is arbitrary, so each filter may match with either sign, the negated copy following it."""
    torch.manual_seed(1)
    images = torch.randn(50, 3, 12, 12) * torch.tensor([1.0, 0.5, 2.0]).view(1, 3, 1, 1) + 0.3
    model = build_model("airbench94", 10)
    model.init_from_data(images)
    x = images.double().numpy()
    patches = np.stack([x[:, :, i:i + 11, j:j + 11] for i in (0, 1) for j in (0, 1)], axis=2)  # N, C, 4, H', W'
    flat = patches.transpose(0, 3, 4, 1, 2).reshape(-1, 12)  # channel-major, then row, then column: (c, i, j)
    values, vectors = np.linalg.eigh(flat.T @ flat / len(flat))
    expected = (vectors / np.sqrt(values + 5e-4)).T[::-1]
    ours = model.whiten.weight.detach().double().numpy().reshape(24, 12)
    signs = np.sign(np.sum(ours[:12] * expected, axis=1))
    assert np.allclose(ours[:12], signs[:, None] * expected, rtol=1e-4, atol=1e-5)
    assert np.array_equal(ours[12:], -ours[:12])


def test_whitening_bias_trains_for_the_first_epochs_only_and_always_requires_a_gradient():
    """The bias moves in epochs 1-3 and not after; it keeps requires_grad throughout, so that DDP,
    which fixes the set of parameters that receive gradients when it wraps the model, still works."""
    params = default_params(**{"model": "airbench94", "train.epochs": 5, "train.batch_size": 8,
                               "evaluate.batch_size": 8, "train.lookahead.every": 0})
    biases, wanted = [], []

    def after_epoch(progress):
        biases.append(progress.kept_weights["whiten.bias"].clone())
    result = run(params, _data(), STATS, device=CPU, on_epoch_end=after_epoch)
    assert result.model.whiten.bias.requires_grad
    start = build_model("airbench94", 3).whiten.bias  # zeros, as every run starts
    for before, after in zip([start.detach(), *biases], biases):
        wanted.append(not torch.equal(before, after))
    assert wanted == [True, True, True, False, False]


def test_norm_biases_get_their_own_lr_and_the_same_decay_per_step():
    cfg = TrainConfig.model_validate(default_params_dict()["train"]).optimizer
    model = build_model("airbench94", 10)
    optimizer = make_optimizer(model, cfg, 512)
    rest, biases, _filters = optimizer.param_groups
    assert {id(p) for p in biases["params"]} == {id(p) for p in norm_biases(model)} and biases["params"]
    assert biases["lr"] == pytest.approx(rest["lr"] * cfg.norm_bias_lr_scale)
    assert biases["lr"] * biases["weight_decay"] == pytest.approx(rest["lr"] * rest["weight_decay"])
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert {id(p) for group in optimizer.param_groups for p in group["params"]} == trainable


@pytest.mark.parametrize("batch_size", [64, 256])
def test_decoupled_units_take_the_steps_of_a_summed_loss_per_1024_images(batch_size):
    """Our SGD on a batch-mean loss follows airbench's form exactly: SGD on the summed loss with
    lr / (1024 (1 + 1 / (1 - momentum))) and decay weight_decay * batch / that same scale."""
    raw = default_params_dict()["train"]["optimizer"]
    cfg = TrainConfig.model_validate(default_params_dict()["train"]).optimizer.model_copy(
        update={"norm_bias_lr_scale": 1.0})
    torch.manual_seed(0)
    ours = nn.Linear(8, 3)
    theirs = copy.deepcopy(ours)
    kilostep = 1024 * (1 + 1 / (1 - raw["momentum"]))
    lr, decay = raw["lr"] / kilostep, raw["weight_decay"] * batch_size / kilostep
    reference = torch.optim.SGD(theirs.parameters(), lr=lr, weight_decay=decay / lr, momentum=raw["momentum"],
                                nesterov=True)
    optimizer = make_optimizer(ours, cfg, batch_size)
    for _ in range(5):
        x, y = torch.randn(batch_size, 8), torch.randint(0, 3, (batch_size,))
        for model, opt, reduction in ((ours, optimizer, "mean"), (theirs, reference, "sum")):
            opt.zero_grad()
            F.cross_entropy(model(x), y, reduction=reduction).backward()
            opt.step()
    for a, b in zip(ours.parameters(), theirs.parameters()):
        assert torch.allclose(a, b, atol=1e-6)


def test_decoupled_units_are_for_sgd_only():
    with pytest.raises(ParamsError, match=r"train.optimizer.decoupled = true .* sgd"):
        default_params(**{"train.optimizer.name": "adam"})


@pytest.mark.parametrize("overrides", [[], ["recipe=airbench94_sgd"]], ids=["committed", "paper"])
def test_linear_schedule_is_airbench_warmup_then_decay_step_by_step(overrides):
    cfg = parse_params(compose(overrides)).train
    optimizer = torch.optim.SGD([{"params": [nn.Parameter(torch.zeros(1))], "lr": 2.0, "lr_scale": 1.0}])
    epochs, steps = 3, 17
    schedule = Schedule(optimizer, cfg.scheduler, epochs, steps)
    line, total = cfg.scheduler.linear, epochs * steps
    warmup = int(total * line.warmup)
    trace = []
    for _ in range(total):
        trace.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step_batch()

    def factor(step):  # the paper's schedule, written out
        if step < warmup:
            return line.start + (1 - line.start) * step / warmup
        return 1 + (line.end - 1) * (step - warmup) / (total - warmup)
    assert trace == pytest.approx([2.0 * factor(step) for step in range(total)])
    assert trace[0] == pytest.approx(2.0 * line.start) and max(trace) == pytest.approx(2.0)


def test_lookahead_averages_every_few_steps_and_ends_on_the_average():
    model = nn.Linear(2, 1)
    cfg = parse_params(compose(["recipe=airbench94_sgd"])).train.lookahead
    total = 12
    lookahead = Lookahead(model, cfg, total)
    average = {k: v.clone() for k, v in model.state_dict().items()}
    for step in range(1, total + 1):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))  # an optimiser step
        weights = {k: v.clone() for k, v in model.state_dict().items()}
        lookahead.after_step()
        if step % cfg.every == 0:
            keep = cfg.decay * (step / total) ** cfg.power
            average = {k: keep * average[k] + (1 - keep) * weights[k] for k in average}
            expected = average
        else:
            expected = average if step == total else weights
        assert all(torch.allclose(model.state_dict()[k], expected[k], atol=1e-6) for k in expected), step


def _augment(**changes) -> AugmentConfig:
    return parse_params(default_params_dict(**changes)).augment


def test_alternating_flips_mirror_each_image_on_exactly_every_other_epoch():
    """Asymmetric images; no crop, so the only change is the flip."""
    count = 64
    images = np.random.default_rng(0).integers(0, 256, (count, 8, 8, 3), dtype=np.uint8)
    batches = DeviceBatches(images, np.arange(count), _augment(**{"augment.crop.p": 0.0}), STATS, 16, CPU,
                            shuffle=True, seed=5)
    flipped = []
    for epoch in range(1, 7):
        batches.set_epoch(epoch)
        seen = torch.zeros(count, dtype=torch.bool)
        for batch, labels in batches:
            original = torch.from_numpy(images[labels.numpy()]).permute(0, 3, 1, 2).float()
            pixels = batch * 0.25 * 255 + 0.5 * 255
            seen[labels] = torch.isclose(pixels, original.flip(-1), atol=1e-3).flatten(1).all(1)
        flipped.append(seen)
    flipped = torch.stack(flipped)
    assert torch.equal(flipped[1:], ~flipped[:-1])  # each image flips on every other epoch
    assert 0.25 < flipped[0].float().mean() < 0.75  # from a random start


def test_alternating_flips_need_the_device_loader_and_p_one_half():
    with pytest.raises(ParamsError, match="augment.hflip.alternate"):
        default_params(**{"train.loader": "albumentations"})
    with pytest.raises(ParamsError, match="augment.hflip.alternate"):
        default_params(**{"augment.hflip.p": 0.3})


def test_reflect_fill_translates_within_a_mirrored_border():
    """Every crop is one of the (2 pad + 1)^2 windows of the reflect-padded image, and all occur."""
    pad = 2
    augment = _augment(**{"augment.crop.padding": pad, "augment.hflip.alternate": False, "augment.hflip.p": 0.0})
    image = torch.from_numpy(np.random.default_rng(1).integers(0, 256, (1, 3, 8, 8), dtype=np.uint8))
    padded = F.pad(image.float(), (pad,) * 4, mode="reflect")
    windows = [padded[..., dy:dy + 8, dx:dx + 8] for dy in range(2 * pad + 1) for dx in range(2 * pad + 1)]
    out = augment_batch(image.expand(400, -1, -1, -1), augment, torch.zeros(3), torch.Generator().manual_seed(0))
    which = [next(i for i, w in enumerate(windows) if torch.equal(w[0], crop)) for crop in out]
    assert set(which) == set(range(len(windows)))


def _data():
    arrays = make_arrays(per_class_train=8, per_class_test=2)
    (x, y), (x_test, y_test) = arrays["train"], arrays["test"]
    return Prepared(x, y, x_test, y_test, CLASSES, x[:0], y[:0])


class _Cut(Exception):
    pass


def test_resume_with_every_recipe_part_on_equals_an_uninterrupted_run(tmp_path):
    """airbench94 with whitening, bias freezing after epoch 3, lookahead, alternating flips,
    reflect translation, Muon with decoupled SGD, micro-batches and the linear schedule, cut after
    epoch 2 of 4."""
    params = default_params(**{"model": "airbench94", "train.epochs": 4, "train.batch_size": 8,
                                 "train.micro_batch": 3, "evaluate.batch_size": 8, "train.lookahead.every": 5})

    def train(**kwargs):
        return run(params, _data(), STATS, device=CPU, **kwargs)
    whole = train()
    state = tmp_path / "state.pt"

    def cut(progress):
        if len(progress.history) == 2:
            raise _Cut
    with pytest.raises(_Cut):
        train(state_path=state, on_epoch_end=cut)
    assert torch.load(state, weights_only=True)["extras"]["lookahead"]["step_count"] == 2 * 3
    resumed = train(state_path=state)
    assert repr(resumed.history) == repr(whole.history) and resumed.step_lrs == whole.step_lrs  # NaN-safe
    a, b = whole.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not state.exists()
    assert load_resume_state(state, "any") is None


def _convolutions_backward_runs_through(model: nn.Module) -> int:
    """How many convolutions a backward pass from the logits goes through."""
    seen, todo, count = set(), [model(torch.randn(2, 3, 32, 32)).sum().grad_fn], 0
    while todo:
        node = todo.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        count += "Convolution" in type(node).__name__
        todo.extend(following for following, _ in node.next_functions)
    return count


def test_once_the_whitening_bias_is_frozen_backward_stops_before_the_whitening():
    """Seven convolutions, six after the freeze: no gradient is computed for the first group's
    input, and the bias gets none (so no optimiser moves it)."""
    model = build_model("airbench94", 10)
    model.start_epoch(WHITEN_BIAS_EPOCHS)
    assert _convolutions_backward_runs_through(model) == 7
    model.start_epoch(WHITEN_BIAS_EPOCHS + 1)
    assert _convolutions_backward_runs_through(model) == 6
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    assert model.whiten.bias.grad is None and model.whiten.bias.requires_grad
