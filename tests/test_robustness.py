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

from cifarlab.core.errors import UserError
from cifarlab.intervals import interval_95, mean_interval_95
from cifarlab.robustness import corruptions, frost
from cifarlab.robustness.corruptions import CORRUPTIONS, SEVERITIES, corrupt
from cifarlab.robustness.grid import cell_rng, class_sample, correctness_grid, grid_table, summary
from conftest import SHARED_FROST, serve_folder


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


# A fixed 32x32 image (no randomness) and what hendrycks/robustness' make_cifar_c.py (commit 8190fe3,
# run as published with numpy 2, scipy, scikit-image 0.26, Pillow and OpenCV 4) makes of it: per
# severity, the mean absolute change from the clean image and the mean of each channel, in 8-bit
# levels. Our pixels agree with its pixels to within one level (the two round floats differently
# before storing 8 bits), so these means agree to within REFERENCE_TOLERANCE.
_ROWS, _COLS = np.mgrid[0:32, 0:32]
REFERENCE_IMAGE = np.stack([127.5 + 127.4 * np.sin(0.37 * _ROWS + 0.61 * _COLS + 1.3 * k)
                            * np.cos(0.23 * _ROWS - 0.17 * (k + 1) * _COLS) for k in range(3)], -1).astype(np.uint8)
REFERENCE_TOLERANCE = 0.1
REFERENCE = {  # corruption: [[mean |change|, mean red, green, blue] at severity 1, ..., at 5]
    "brightness": [[7.87, 134.77, 134.63, 134.43], [15.54, 142.42, 142.32, 142.11], [22.32, 149.15, 149.11, 148.91],
                  [28.27, 155.09, 155.05, 154.89], [37.51, 164.37, 164.2, 164.18]],
    "contrast": [[12.97, 126.29, 126.18, 126.05], [25.91, 126.2, 126.12, 126.04], [31.1, 126.35, 126.3, 126.03],
                [36.27, 126.42, 126.27, 126.12], [44.05, 126.41, 126.23, 126.06]],
    "jpeg_compression": [[16.04, 127.04, 126.58, 126.76], [17.11, 127.02, 126.19, 126.44],
                         [16.91, 126.61, 126.69, 125.88], [19.75, 127.39, 126.2, 127.79],
                         [21.75, 126.87, 126.95, 126.95]],
    "pixelate": [[3.74, 126.96, 126.81, 126.64], [7.47, 127.0, 126.86, 126.69], [8.65, 127.05, 126.91, 126.74],
                [12.82, 127.13, 127.02, 126.81], [18.12, 127.25, 127.1, 126.96]],
    "defocus_blur": [[1.73, 126.36, 126.2, 126.11], [4.46, 126.31, 126.15, 126.13], [6.94, 126.25, 126.09, 126.19],
                    [8.49, 126.22, 126.05, 126.21], [13.84, 126.17, 125.99, 126.35]],
    "zoom_blur": [[21.29, 125.88, 125.25, 125.98], [23.07, 125.29, 124.89, 126.73], [27.69, 125.07, 124.65, 127.04],
                 [32.22, 124.84, 124.72, 127.69], [36.6, 124.82, 125.04, 128.14]],
}
# frost, each severity drawn with np.random.default_rng(severity): (photograph, top, left) of its crop
FROST_CROPS = {1: (2, 15, 60), 2: (4, 17, 10), 3: (4, 5, 17), 4: (3, 35, 64), 5: (3, 30, 1)}
FROST_REFERENCE = [[37.56, 163.31, 164.06, 165.52], [37.8, 161.61, 164.75, 167.25], [43.05, 165.86, 170.02, 173.46],
                   [38.88, 160.66, 165.97, 170.22], [29.71, 148.57, 155.42, 160.38]]


def _change_and_means(image: np.ndarray) -> list[float]:
    changed = image.astype(np.float64)
    return [np.abs(changed - REFERENCE_IMAGE).mean(), *changed.mean(axis=(0, 1))]


@pytest.mark.parametrize("name", list(REFERENCE))
def test_each_deterministic_corruption_is_the_benchmarks_on_a_fixed_image(name):
    for severity, expected in zip(SEVERITIES, REFERENCE[name]):
        got = _change_and_means(corrupt(REFERENCE_IMAGE[None], name, severity, np.random.default_rng(0))[0])
        assert np.allclose(got, expected, atol=REFERENCE_TOLERANCE), (name, severity, got, expected)


needs_frost = pytest.mark.skipif(not SHARED_FROST.is_dir(),
                                 reason="the frost photographs (../shared/data/frost) are absent")


@needs_frost
def test_frost_from_the_benchmarks_photographs_is_the_benchmarks_frost_on_fixed_crops():
    source = frost.frost_source(str(SHARED_FROST), 32)
    assert source.is_benchmark and [photo.shape[:2] for photo in source.photos] == [
        (120, 180), (63, 112), (63, 112), (70, 105), (99, 132)]  # a fifth of each photograph's size
    for severity, expected in zip(SEVERITIES, FROST_REFERENCE):
        draws = np.random.default_rng(severity)
        photo = int(draws.integers(5))
        crop = (photo, int(draws.integers(0, source.photos[photo].shape[0] - 32)),
                int(draws.integers(0, source.photos[photo].shape[1] - 32)))
        assert crop == FROST_CROPS[severity]
        got = _change_and_means(corrupt(REFERENCE_IMAGE[None], "frost", severity, np.random.default_rng(severity),
                                        source.photos)[0])
        assert np.allclose(got, expected, atol=REFERENCE_TOLERANCE), (severity, got, expected)


@needs_frost
def test_the_photographs_change_an_image_more_than_the_drawn_texture():
    """Why the drawn texture is only a stand-in: the benchmark's frost is heavier."""
    images, source = _photos(50), frost.frost_source(str(SHARED_FROST), 32)
    for severity in SEVERITIES:
        photographed = corrupt(images, "frost", severity, cell_rng(0, "frost", severity), source.photos)
        drawn = corrupt(images, "frost", severity, cell_rng(0, "frost", severity))
        change = [np.abs(x.astype(int) - images).mean() for x in (photographed, drawn)]
        assert change[0] > change[1], (severity, change)


@needs_frost
def test_a_frost_folder_that_is_not_the_benchmarks_is_one_line_naming_the_file(tmp_path):
    for name in frost.PHOTOS:
        (tmp_path / name).write_bytes((SHARED_FROST / name).read_bytes())
    (tmp_path / "frost3.png").write_bytes(b"not the photograph")
    with pytest.raises(UserError, match=r"robustness.frost = .*: frost3.png is not the benchmark's photograph"):
        frost.frost_source(str(tmp_path), 32)
    (tmp_path / "frost3.png").unlink()
    with pytest.raises(UserError, match=r"frost3.png is missing"):
        frost.frost_source(str(tmp_path), 32)
    with pytest.raises(UserError, match=r"no such folder; expected 'benchmark'"):
        frost.frost_source(str(tmp_path / "nowhere"), 32)


@needs_frost
def test_frost_downloads_each_photograph_once_checked_and_falls_back_to_drawn_saying_why(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the cache, data/raw/frost/, is the project's
    with serve_folder(SHARED_FROST) as url:
        assert frost.frost_source(url, 32).is_benchmark
    cached = sorted(path.name for path in (tmp_path / frost.CACHE).iterdir())
    assert cached == sorted(frost.PHOTOS)  # the five the script draws from, nothing partial
    assert frost.frost_source("http://127.0.0.1:9/", 32).is_benchmark  # a checked copy is not fetched again
    (tmp_path / frost.CACHE / "frost2.png").unlink()
    offline = frost.frost_source("http://127.0.0.1:9/", 32)
    assert not offline.is_benchmark and "could not download http://127.0.0.1:9/frost2.png" in offline.provenance
    assert "robustness.frost" in offline.provenance  # how to get them offline
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    for name in frost.PHOTOS:
        (damaged / name).write_bytes((SHARED_FROST / name).read_bytes()[:-10])
    with serve_folder(damaged) as url:
        assert "checksum mismatch" in frost.frost_source(url, 32).provenance
    kept = sorted(path.name for path in (tmp_path / frost.CACHE).iterdir())
    assert kept == sorted(set(frost.PHOTOS) - {"frost2.png"})  # the damaged download removed


def test_drawn_frost_says_it_is_not_the_benchmarks():
    source = frost.frost_source("drawn", 32)
    assert source.photos is None and not source.is_benchmark and "not the benchmark" in source.provenance


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
    grid = correctness_grid(images, 0, lambda batch: None, None)
    assert list(grid) == list(right)  # the clean cell, then every corruption at every severity
    result = summary(cells, frost.frost_source("drawn", 8))
    assert result["frost_is_benchmark"] is False and result["frost"] == "drawn texture"
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
