"""GradCAM is right, not just drawn: on data whose class is decided by a small patch, its peak
falls inside the patch (pointing game); removing its most relevant pixels (refilled from their
neighbours, ROAD) hurts the prediction far more than removing its least relevant ones; and the
sanity checks of Adebayo et al. hold (randomised weights: no gap, different maps)."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from cifarlab.config import AugmentConfig
from cifarlab.gradcam.faithfulness import impute, road_curves
from cifarlab.gradcam.figures import overlay
from cifarlab.gradcam.maps import gradcam_maps
from cifarlab.prepared import Prepared
from cifarlab.stats import Stats, normalised
from cifarlab.train.run import run
from conftest import PLAIN_RECIPE, default_params

PATCH = 8


def patch_images(count: int, rng: np.random.Generator):
    """Noise images; class 0 has a horizontally striped 8x8 patch at a random place, class 1 a
    vertically striped one, class 2 none. Both stripe patches have the same mean colour, so only
    the patch tells the classes apart, and the 'no patch' class stops the net from learning one
    stripe class as 'not the other' (which would leave nothing to point at)."""
    images = rng.integers(0, 256, (count, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 3, count).astype(np.int64)
    corners = rng.integers(0, 32 - PATCH + 1, (count, 2))
    stripes = np.zeros((PATCH, PATCH), dtype=np.uint8)
    stripes[::2] = 255
    for image, label, (row, col) in zip(images, labels, corners):
        if label < 2:
            image[row:row + PATCH, col:col + PATCH] = (stripes if label == 0 else stripes.T)[..., None]
    return images, labels, corners


@pytest.fixture(scope="module")
def patch_model():
    rng = np.random.default_rng(0)
    x_train, y_train, _ = patch_images(900, rng)
    x_test, y_test, corners = patch_images(300, rng)
    no_augmentation = {f"augment.{name}.p": 0.0 for name in AugmentConfig.model_fields}
    params = default_params(**{**PLAIN_RECIPE, "model": "tiny", "train.epochs": 6, "train.batch_size": 32,
                                 "train.seed": 0, "train.precision": "fp32",  # bf16 on one AMX core localises worse
                                 "evaluate.batch_size": 100, "train.scheduler.onecycle.max_lr": 0.05,
                                 "train.scheduler.onecycle.peak_epoch": 2,
                                 **no_augmentation})
    stats = Stats([0.5] * 3, [0.29] * 3)
    result = run(params, Prepared(x_train, y_train, x_test, y_test, ["h", "v", "none"]), stats,
                 device=torch.device("cpu"))
    assert result.history[-1].test_acc > 90
    model = result.model.eval()
    return model, normalised(x_test, stats), y_test, corners


def test_pointing_game_gradcam_peak_lies_inside_the_patch(patch_model):
    model, inputs, labels, corners = patch_model
    with torch.no_grad():
        predicted = model(inputs).argmax(1)
    keep = (labels < 2) & (predicted.numpy() == labels)  # images with a patch, classified right
    maps = gradcam_maps(model, model.c3, inputs[keep], predicted[keep])  # the 16x16 layer
    peaks = np.array([np.unravel_index(np.argmax(m), m.shape) for m in maps])
    margin = 2  # one cell of the 16x16 map, for the bilinear upsampling
    rows, cols = corners[keep].T
    inside = ((peaks[:, 0] >= rows - margin) & (peaks[:, 0] < rows + PATCH + margin)
              & (peaks[:, 1] >= cols - margin) & (peaks[:, 1] < cols + PATCH + margin))
    # A random peak lands in the 12x12 target area 144/1024 = 14% of the time; this net scores
    # about 100% (2026-11). 80% is far above chance and leaves room for training noise.
    assert inside.mean() >= 0.8, inside.mean()
    for label in (0, 1):  # both stripe classes, not only one
        assert inside[labels[keep] == label].mean() >= 0.7


FRACTIONS = [0.1, 0.3, 0.5, 0.7, 0.9]


def _road(model, inputs, layer):
    with torch.no_grad():
        predicted = model(inputs).argmax(1)
    maps = gradcam_maps(model, layer, inputs, predicted)
    return maps, road_curves(model, inputs, maps, FRACTIONS)


def test_road_morf_falls_far_faster_than_lerf_on_the_planted_patch(patch_model):
    model, inputs, _labels, _corners = patch_model
    _, curves = _road(model, inputs[:60], model.c3)
    # measured gap 0.54 here (2026-11): hiding the patch first kills the prediction, hiding the noise does not
    assert curves.gap > 0.3, curves
    assert curves.probability["morf"][-1] < curves.probability["random"][-1] < curves.probability["lerf"][-1]


def _rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Mean per-image Spearman correlation of two sets of maps."""
    def ranks(m):
        return np.argsort(np.argsort(m.reshape(len(m), -1), axis=1), axis=1).astype(float)
    ra, rb = ranks(a), ranks(b)
    ra -= ra.mean(axis=1, keepdims=True)
    rb -= rb.mean(axis=1, keepdims=True)
    return float(np.mean((ra * rb).sum(1) / np.sqrt((ra ** 2).sum(1) * (rb ** 2).sum(1) + 1e-12)))


def test_sanity_randomised_weights_collapse_the_gap_and_change_the_maps(patch_model):
    """Adebayo et al.: a faithful explanation depends on the weights."""
    model, inputs, _labels, _corners = patch_model
    trained_maps, _ = _road(model, inputs[:60], model.c3)
    randomised = copy.deepcopy(model)
    torch.manual_seed(1)
    for module in randomised.modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
    random_maps, curves = _road(randomised.eval(), inputs[:60], randomised.c3)
    # measured gap 0.00 and rank correlation 0.03 here (2026-11)
    assert abs(curves.gap) < 0.05, curves
    assert _rank_correlation(trained_maps, random_maps) < 0.5


def test_imputation_fills_from_neighbours_and_keeps_the_rest():
    rng = np.random.default_rng(0)
    rows, cols = np.mgrid[0:16, 0:16]
    image = np.stack([rows * 0.1 + cols * 0.05, np.ones((16, 16)), cols * 0.2])
    hole = np.zeros((16, 16), dtype=bool)
    hole[4:10, 5:12] = True
    filled = impute(image, hole, 0.0, rng)
    np.testing.assert_allclose(filled, image, atol=1e-9)  # a linear image is its own neighbours' mean
    noisy = impute(image, hole, 0.1, rng)
    assert np.array_equal(noisy[:, ~hole], image[:, ~hole]) and 0.05 < (noisy - image)[:, hole].std() < 0.15


class _NegativeEvidence(nn.Module):
    """Class 1's logit falls with every activation: its GradCAM has no positive part."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
        self.head = nn.Linear(4, 2)
        with torch.no_grad():
            self.head.weight.copy_(torch.tensor([[1.0] * 4, [-1.0] * 4]))

    def forward(self, x):
        return self.head(self.features(x).mean(dim=(2, 3)))


def test_an_all_zero_map_is_kept_zero_and_drawn_without_error():
    model = _NegativeEvidence()
    maps = gradcam_maps(model, model.features, torch.rand(3, 3, 32, 32), torch.tensor([1, 1, 1]))
    assert np.isfinite(maps).all() and (maps == 0).all()
    image = np.full((32, 32, 3), 200, dtype=np.uint8)
    drawn = overlay(image, maps[0])
    assert drawn.shape == (32, 32, 3) and np.isfinite(drawn).all()
    assert np.allclose(drawn, 200 / 255 * 0.5 + 0.25)  # the image dimmed, no colour of "zero"
