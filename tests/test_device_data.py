"""The device data path augments like the albumentations pipeline: same crop offset range, flip
rate, rotation angles, shift and scale ranges, hole size, fill, gray weights and rates; p = 0 is
plain normalisation. Each property is measured on both paths with the same test."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from cifarlab.config import AugmentConfig, parse_params
from cifarlab.feed.augment import eval_transform, train_transform
from cifarlab.feed.batches import DeviceBatches
from cifarlab.stats import Stats
from conftest import default_params_dict

MEAN, STD = [0.5, 0.25, 0.75], [0.2, 0.2, 0.2]
STATS = Stats(MEAN, STD)

SAMPLES = 1500
OFF = {"crop": {"p": 0.0, "padding": 4, "fill": "mean"}, "hflip": {"p": 0.0, "alternate": False},
       "cutout": {"p": 0.0, "size": 8},
       "rotate": {"p": 0.0, "limit": 5}, "shift_scale_rotate": {"p": 0.0, "shift": 0.1, "scale": 0.1, "rotate": 5},
       "to_gray": {"p": 0.0}}


def _aug(**on):
    return AugmentConfig.model_validate({name: {**cfg, **on.get(name, {})} for name, cfg in OFF.items()})


def _pixels(batch: torch.Tensor) -> np.ndarray:
    """Normalised NCHW floats back to 0-255 NHWC."""
    return np.rint((batch.numpy().transpose(0, 2, 3, 1) * np.array(STD) + np.array(MEAN)) * 255)


def device_samples(image: np.ndarray, augment: dict) -> np.ndarray:
    batches = DeviceBatches(np.repeat(image[None], SAMPLES, axis=0), np.zeros(SAMPLES, dtype=np.int64),
                            augment, STATS, SAMPLES, torch.device("cpu"), seed=1)
    return _pixels(next(iter(batches))[0])


def album_samples(image: np.ndarray, augment: dict) -> np.ndarray:
    transform = train_transform(augment, STATS, 32, seed=1)
    return _pixels(torch.stack([transform(image=image)["image"] for _ in range(SAMPLES)]))


SOURCES = {"device": device_samples, "albumentations": album_samples}


def _marker() -> np.ndarray:
    image = np.zeros((32, 32, 3), dtype=np.uint8)
    image[16, 16] = 255
    return image


@pytest.mark.parametrize("source", SOURCES)
def test_crop_offsets_cover_the_same_range(source):
    out = SOURCES[source](_marker(), _aug(crop={"p": 1.0}))
    found = [np.argwhere((img == 255).all(axis=-1)) for img in out]
    shifts = np.array([spot[0] - 16 for spot in found if len(spot) == 1])
    assert len(shifts) > 0.95 * SAMPLES
    assert set(shifts[:, 0]) == set(range(-4, 5)) and set(shifts[:, 1]) == set(range(-4, 5))
    assert abs(shifts.mean()) < 0.3


@pytest.mark.parametrize("source", SOURCES)
def test_padding_is_filled_with_the_mean(source):
    out = SOURCES[source](np.full((32, 32, 3), 255, dtype=np.uint8), _aug(crop={"p": 1.0}))
    border = ~(out == 255).all(axis=-1)
    assert border.any() and (out[border] == STATS.fill).all()


@pytest.mark.parametrize("source", SOURCES)
def test_crop_then_flip_mirrors_the_padding_with_the_image(source):
    """Every output is one crop of the mean-padded image, mirrored or not, padding included; so
    a flip after a crop also moves the padded border to the other side."""
    image = np.random.default_rng(0).integers(0, 256, (32, 32, 3)).astype(np.uint8)
    out = SOURCES[source](image, _aug(crop={"p": 1.0}, hflip={"p": 0.5}))
    canvas = np.full((40, 40, 3), np.nan)
    canvas[4:36, 4:36] = image
    near_fill = (np.abs(out - np.array(MEAN) * 255) <= 1).all(axis=-1)
    matched = np.zeros(len(out), dtype=bool)
    mirrored_and_padded = 0
    for top in range(9):
        for left in range(9):
            for mirrored in (False, True):
                crop = canvas[top:top + 32, left:left + 32]
                crop = crop[:, ::-1] if mirrored else crop
                padding = np.isnan(crop).any(axis=-1)
                same = (((out == crop) | padding[..., None]).all(axis=(1, 2, 3))
                        & (near_fill | ~padding).all(axis=(1, 2)))
                matched |= same
                mirrored_and_padded += int(same.sum()) if mirrored and left != 4 else 0
    assert matched.all(), f"{(~matched).sum()} outputs are no mirrored-or-not crop of the padded image"
    assert mirrored_and_padded > 0.3 * SAMPLES  # the case at stake did occur


@pytest.mark.parametrize("source", SOURCES)
def test_flip_rate_matches_p(source):
    image = np.zeros((32, 32, 3), dtype=np.uint8)
    image[:, :4] = 255
    out = SOURCES[source](image, _aug(hflip={"p": 0.3}))
    flipped = (out[:, :, -1] == 255).all(axis=(1, 2))
    assert abs(flipped.mean() - 0.3) < 0.05


@pytest.mark.parametrize("source", SOURCES)
def test_cutout_hole_size_fill_and_rate(source):
    out = SOURCES[source](np.full((32, 32, 3), 255, dtype=np.uint8), _aug(cutout={"p": 0.6, "size": 8}))
    holes = (out == STATS.fill).all(axis=-1)
    sizes = holes.sum(axis=(1, 2))
    assert set(sizes) == {0, 64}
    assert abs((sizes == 64).mean() - 0.6) < 0.05
    for hole in holes[sizes == 64][:50]:
        rows, cols = np.nonzero(hole)
        assert np.ptp(rows) == 7 and np.ptp(cols) == 7  # one 8x8 square, inside the image


def test_probabilities_zero_is_plain_normalisation():
    image = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    batches = DeviceBatches(image[None], np.zeros(1, dtype=np.int64), _aug(), STATS, 1, torch.device("cpu"))
    expected = eval_transform(STATS)(image=image)["image"]
    assert torch.allclose(next(iter(batches))[0][0], expected, atol=1e-5)


def test_shuffled_epochs_cover_every_image_once_and_reseed_repeats():
    images = np.arange(10, dtype=np.uint8).repeat(32 * 32 * 3).reshape(10, 32, 32, 3)
    batches = DeviceBatches(images, np.arange(10), None, STATS, 4, torch.device("cpu"), shuffle=True)
    batches.set_epoch(5)
    first = torch.cat([labels for _, labels in batches]).tolist()
    assert sorted(first) == list(range(10)) and len(batches) == 3
    batches.set_epoch(5)
    assert torch.cat([labels for _, labels in batches]).tolist() == first


def _block(size: int, centre: tuple[int, int] = (16, 16)) -> np.ndarray:
    """A white square on the fill colour, so what a warp brings in from outside adds nothing."""
    image = np.zeros((32, 32, 3), dtype=np.uint8) + np.array(STATS.fill, dtype=np.uint8)
    top, left = centre[0] - size // 2, centre[1] - size // 2
    image[top:top + size, left:left + size] = 255
    return image


def _whiteness(out: np.ndarray) -> np.ndarray:
    """0 where a pixel is the fill colour, 1 where it is white."""
    fill = np.array(STATS.fill)
    return ((out - fill) / (255 - fill)).mean(-1)


def _centroids(out: np.ndarray) -> np.ndarray:
    """(row, col) of each image's white centre, relative to the image centre (15.5, 15.5)."""
    weight = _whiteness(out)
    rows, cols = np.mgrid[:32, :32]
    total = weight.sum(axis=(1, 2))
    return np.stack([(weight * rows).sum(axis=(1, 2)) / total, (weight * cols).sum(axis=(1, 2)) / total], -1) - 15.5


@pytest.mark.parametrize("source", SOURCES)
def test_rotation_angles_are_uniform_within_the_limit(source):
    out = SOURCES[source](_block(4, centre=(16, 26)), _aug(rotate={"p": 1.0, "limit": 30}))
    row, col = _centroids(out).T
    angles = np.degrees(np.arctan2(-row, col))  # the marker starts 10 px right of the centre
    assert np.abs(angles).max() < 31 and np.abs(angles).max() > 28
    assert abs(angles.mean()) < 1.5 and abs(angles.std() - 30 / np.sqrt(3)) < 1.0  # uniform on [-30, 30]
    radius = np.hypot(row, col)
    assert np.abs(radius - radius.mean()).max() < 0.5  # turned about the centre, not shifted


@pytest.mark.parametrize("source", SOURCES)
def test_rotation_fills_the_corners_with_the_mean(source):
    out = SOURCES[source](np.full((32, 32, 3), 255, dtype=np.uint8), _aug(rotate={"p": 0.5, "limit": 45}))
    corner = out[:, 0, 0]
    assert ((corner == STATS.fill).all(-1)).mean() > 0.3  # the turned images' far corners are all mean
    assert ((corner == 255).all(-1)).mean() > 0.45  # p = 0.5: the rest are untouched
    assert (corner >= np.array(STATS.fill)).all()


@pytest.mark.parametrize("source", SOURCES)
def test_shift_scale_rotate_shifts_whole_pixels_and_scales_x_and_y_apart(source):
    ssr = {"p": 1.0, "shift": 0.1, "scale": 0.2, "rotate": 0}
    moved = _centroids(SOURCES[source](_block(2), _aug(shift_scale_rotate=ssr)))
    assert set(np.rint(moved).astype(int).ravel()) == set(range(-3, 4))  # trunc(U(-3.2, 3.2))
    assert np.abs(moved - np.rint(moved)).max() < 0.05 and np.abs(moved.mean(0)).max() < 0.3
    out = SOURCES[source](_block(16), _aug(shift_scale_rotate={**ssr, "shift": 0.0}))
    bright = _whiteness(out)
    heights, widths = bright.sum(1).max(1), bright.sum(2).max(1)  # the square's extent along each axis
    for extent in (heights, widths):
        assert 16 * 0.8 - 0.6 < extent.min() < 16 * 0.85 and 16 * 1.15 < extent.max() < 16 * 1.2 + 0.6
    assert abs(np.corrcoef(heights, widths)[0, 1]) < 0.1  # drawn apart (albumentations' keep_ratio=False)


@pytest.mark.parametrize("source", SOURCES)
def test_gray_uses_the_same_weights_and_rate(source):
    image = np.zeros((32, 32, 3), dtype=np.uint8)
    image[...] = (200, 100, 50)
    out = SOURCES[source](image, _aug(to_gray={"p": 0.4}))
    gray = (out == out[..., :1]).all(axis=(1, 2, 3))
    assert abs(gray.mean() - 0.4) < 0.05
    assert np.abs(out[gray] - (0.299 * 200 + 0.587 * 100 + 0.114 * 50)).max() <= 1


def test_every_augmentation_in_params_runs_on_the_device_path():
    everything = {"crop": {"p": 1.0}, "hflip": {"p": 0.5}, "rotate": {"p": 0.5}, "shift_scale_rotate": {"p": 0.5},
                  "cutout": {"p": 0.5}, "to_gray": {"p": 0.2}}
    params = parse_params({**default_params_dict(**{"train.loader": "device"}),
                           "augment": _aug(**everything).model_dump()})
    image = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    out = device_samples(image, params.augment)
    assert out.shape == (SAMPLES, 32, 32, 3) and (out >= 0).all() and (out <= 255).all()
