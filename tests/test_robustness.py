"""Corruption robustness: each CIFAR-10-C corruption leaves a severity-0 image alone and changes
images more at severity 5 than at 1; the resampling helpers agree with scipy and the brightness
shift with an HSV round trip; each grid cell is reproducible alone; the sample is class-balanced;
and the summary's mean, drop, worst corruption and intervals are what the cells say."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib.colors import hsv_to_rgb, rgb_to_hsv
from scipy import ndimage

from cifarlab.intervals import interval_95, mean_interval_95
from cifarlab.robustness import corruptions
from cifarlab.robustness.corruptions import CORRUPTIONS, SEVERITIES, corrupt
from cifarlab.robustness.grid import cell_rng, class_sample, correctness_grid, grid_table, summary


def _photos(n: int = 24, side: int = 32, seed: int = 0) -> np.ndarray:
    """Smooth, photo-like uint8 images: blurred colour noise over a gradient, with a bright square."""
    rng = np.random.default_rng(seed)
    images = ndimage.gaussian_filter(rng.random((n, side, side, 3)), sigma=(0, 3, 3, 0))
    images = (images - images.min()) / (images.max() - images.min())
    images = 0.6 * images + 0.3 * np.linspace(0, 1, side)[None, :, None, None]
    images[:, 8:20, 10:22] += 0.25 * rng.random((n, 1, 1, 3))
    return (np.clip(images, 0, 1) * 255).astype(np.uint8)


def _decorrelation(clean: np.ndarray, changed: np.ndarray) -> float:
    """1 - the mean per-image correlation of pixel values: 0 for an image left alone."""
    a = clean.reshape(len(clean), -1).astype(np.float64)
    b = changed.reshape(len(changed), -1).astype(np.float64)
    a -= a.mean(1, keepdims=True)
    b -= b.mean(1, keepdims=True)
    return float(1 - ((a * b).sum(1) / np.sqrt((a * a).sum(1) * (b * b).sum(1))).mean())


def test_the_fifteen_corruptions_of_the_benchmark_in_four_families():
    assert list(CORRUPTIONS) == [
        "gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur", "zoom_blur",
        "snow", "frost", "fog", "brightness", "contrast", "elastic_transform", "pixelate", "jpeg_compression"]
    assert SEVERITIES == (1, 2, 3, 4, 5)


@pytest.mark.parametrize("name", [name for name in CORRUPTIONS if name != "elastic_transform"])
def test_each_corruption_changes_images_more_at_severity_5_than_at_1(name):
    images = _photos()
    changed = {s: corrupt(images, name, s, cell_rng(0, name, s)) for s in (0, 1, 5)}
    assert np.array_equal(changed[0], images)
    assert all(changed[s].dtype == np.uint8 and changed[s].shape == images.shape for s in (1, 5))
    mild, severe = _decorrelation(images, changed[1]), _decorrelation(images, changed[5])
    assert 0 < mild < severe, (name, mild, severe)


def _plane_residual(images: np.ndarray) -> float:
    """How far the inner pixels of (N, H, W, 3) images are from a plane a*x + b*y + c, in 8-bit
    steps: an affine warp of a linear ramp is still a ramp, a non-affine warp bends it."""
    inner = images[:, 8:24, 8:24, 0].astype(np.float64)
    rows, cols = np.mgrid[8:24, 8:24]
    design = np.c_[cols.ravel(), rows.ravel(), np.ones(rows.size)]
    fitted = [design @ np.linalg.lstsq(design, image.ravel(), rcond=None)[0] for image in inner]
    return float(np.mean([np.abs(f - image.ravel()).mean() for f, image in zip(fitted, inner)]))


def test_elastic_transform_bends_images_more_at_severity_5_than_at_1():
    """The benchmark's severity 1 is the largest affine shake and no elastic field, so its pixels
    move the most; what grows with severity is the local bending, measured on ramps."""
    ramps = np.broadcast_to((np.add.outer(np.arange(32) * 3.0, np.arange(32) * 4.0) + 20)[None, :, :, None],
                            (16, 32, 32, 3)).astype(np.uint8)
    bends = {s: _plane_residual(corrupt(ramps, "elastic_transform", s, cell_rng(0, "elastic_transform", s)))
             for s in SEVERITIES}
    assert bends[1] < 1.0 < bends[5], bends  # severity 1: a plane up to 8-bit rounding
    assert bends[3] < bends[5], bends


def test_zoom_and_resampling_agree_with_scipy():
    """Our torch versions of the benchmark's scipy.ndimage.zoom and map_coordinates give their values."""
    x = _photos(4).astype(np.float64) / 255
    for factor in (1.01, 1.07, 1.25):
        crop = int(np.ceil(32 / factor))
        top = (32 - crop) // 2
        zoomed = ndimage.zoom(x[:, top:top + crop, top:top + crop], (1, factor, factor, 1), order=1)
        trim = (zoomed.shape[1] - 32) // 2
        assert np.allclose(corruptions._clipped_zoom(x, factor), zoomed[:, trim:trim + 32, trim:trim + 32])
    rows, cols = np.mgrid[0:32, 0:32].astype(np.float64)
    rng = np.random.default_rng(1)
    src_x, src_y = cols + rng.uniform(-3, 3, cols.shape), rows + rng.uniform(-3, 3, rows.shape)
    images = torch.from_numpy(x[:1]).permute(0, 3, 1, 2)
    for mode, at_centres in (("mirror", True), ("reflect", False)):
        expected = np.stack([ndimage.map_coordinates(x[0, ..., c], [src_y, src_x], order=1, mode=mode)
                             for c in range(3)], axis=-1)
        got = corruptions._resample(images, torch.from_numpy(src_x)[None], torch.from_numpy(src_y)[None], at_centres)
        assert np.allclose(got[0].permute(1, 2, 0).numpy(), expected), mode


def test_brightness_is_an_hsv_value_shift():
    x = np.concatenate([_photos(4).astype(np.float64) / 255, np.zeros((1, 32, 32, 3))])  # and a black image
    for severity, lift in zip(SEVERITIES, (0.05, 0.1, 0.15, 0.2, 0.3)):
        hsv = rgb_to_hsv(x)
        hsv[..., 2] = np.clip(hsv[..., 2] + lift, 0, 1)
        assert np.allclose(corruptions.brightness(x, severity, None), hsv_to_rgb(hsv))


def test_a_cell_is_the_same_whatever_else_the_grid_holds():
    images = _photos(6)
    alone = corrupt(images, "snow", 4, cell_rng(3, "snow", 4))
    corrupt(images, "fog", 2, cell_rng(3, "fog", 2))  # another cell drawn first changes nothing
    assert np.array_equal(corrupt(images, "snow", 4, cell_rng(3, "snow", 4)), alone)
    assert not np.array_equal(corrupt(images, "snow", 4, cell_rng(4, "snow", 4)), alone)  # the seed does


def test_the_sample_takes_each_class_alike():
    labels = np.repeat(np.arange(4), [50, 50, 50, 3])
    chosen = class_sample(labels, 10, seed=0)
    assert np.bincount(labels[chosen]).tolist() == [10, 10, 10, 3]  # a small class gives what it has
    assert np.all(np.diff(chosen) > 0)
    assert np.array_equal(class_sample(labels, 10, seed=0), chosen)
    assert not np.array_equal(class_sample(labels, 10, seed=1), chosen)
    assert np.array_equal(class_sample(labels, 0, seed=0), np.arange(len(labels)))  # 0: the whole test split


def test_the_summary_says_what_the_cells_say():
    """A model that gets image k right in a cell when k < the cell's share of 10 images."""
    images = np.zeros((10, 8, 8, 3), dtype=np.uint8)
    right = {("clean", 0): 9, **{(name, s): (5 if name == "fog" else 8) - (s > 3) for name in CORRUPTIONS
                                 for s in SEVERITIES}}
    cells = {cell: np.arange(10) < hits for cell, hits in right.items()}
    grid = correctness_grid(images, 0, lambda batch: None)
    assert list(grid) == list(right)  # the clean cell, then every corruption at every severity
    result = summary(cells)
    # fog: 5,5,5,4,4 of 10 -> 46%; the other 14: 8,8,8,7,7 -> 76%
    assert result["corruption_accuracy"]["fog"] == {"mean": 46.0, "severity_1": 50.0, "severity_2": 50.0,
                                                    "severity_3": 50.0, "severity_4": 40.0, "severity_5": 40.0}
    assert result["clean_accuracy"] == 90.0 and result["clean_accuracy_95"] == interval_95(9, 10)
    assert result["mean_corruption_accuracy"] == pytest.approx((14 * 76 + 46) / 15, abs=0.01)
    assert result["mean_drop"] == pytest.approx(90 - (14 * 76 + 46) / 15, abs=0.01)
    assert (result["worst_corruption"], result["worst_corruption_accuracy"]) == ("fog", 46.0)
    per_image = np.stack([hits for cell, hits in cells.items() if cell[0] != "clean"]).mean(axis=0)
    assert result["mean_corruption_accuracy_95"] == mean_interval_95(per_image)
    table = grid_table(cells)
    assert len(table) == 75 and table.query("corruption == 'fog' and severity == 5")["accuracy"].item() == 40.0


def test_the_mean_interval_is_the_normal_interval_of_per_image_scores():
    scores = np.array([0.0, 0.5, 1.0, 1.0])  # mean 0.625, sample std 0.4787
    half = 1.959964 * 0.478714 / 2
    assert mean_interval_95(scores) == {"low": round(100 * (0.625 - half), 2), "high": 100.0}  # clipped at 100
