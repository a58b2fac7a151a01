"""The device data path augments like the albumentations pipeline: same crop offset range, flip
rate, hole size, hole fill and rates; p = 0 is plain normalisation."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from cifarlab.config import AugmentConfig, ParamsError, parse_params
from cifarlab.data.augment import eval_transform, train_transform
from cifarlab.data.batches import DeviceBatches
from cifarlab.data.stats import Stats
from conftest import committed_params_dict

MEAN, STD = [0.5, 0.25, 0.75], [0.2, 0.2, 0.2]
STATS = Stats(MEAN, STD)

SAMPLES = 1500
OFF = {"crop": {"p": 0.0, "padding": 4}, "hflip": {"p": 0.0}, "cutout": {"p": 0.0, "size": 8},
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


def test_unsupported_augmentations_are_refused_by_name():
    def on_device(**on):
        return parse_params({**committed_params_dict(**{"train.loader": "device"}), "augment": _aug(**on).model_dump()})
    with pytest.raises(ParamsError, match="augment.rotate.p = 0"):
        on_device(rotate={"p": 0.5})
    on_device(crop={"p": 1.0}, hflip={"p": 0.5}, cutout={"p": 0.5})
