"""Augmentations do what params say, on uint8 images, and wrong argument names fail loudly."""
from __future__ import annotations

import albumentations as A
import numpy as np
import pytest

from cifarlab.config import AugmentConfig
from cifarlab.feed.augment import eval_transform, train_transform
from cifarlab.stats import Stats
from conftest import default_params_dict

MEAN, STD = [0.5, 0.25, 0.75], [0.2, 0.2, 0.2]
STATS = Stats(MEAN, STD)



def _augment(**overrides):
    aug = {name: {**cfg, "p": 0.0} for name, cfg in default_params_dict()["augment"].items()}
    for name, cfg in overrides.items():
        aug[name].update(cfg)
    return AugmentConfig.model_validate(aug)


def _pixels(tensor, mean=MEAN, std=STD):
    """Undo Normalize + ToTensorV2 back to 0-255 HWC."""
    array = tensor.numpy().transpose(1, 2, 0)
    return (array * np.array(std) + np.array(mean)) * 255.0


def test_all_probabilities_zero_is_identity_up_to_normalisation():
    image = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    out = train_transform(_augment(), STATS, 32, seed=0)(image=image)["image"]
    expected = eval_transform(STATS)(image=image)["image"]
    assert out.shape == (3, 32, 32)
    np.testing.assert_allclose(out.numpy(), expected.numpy(), atol=1e-6)


def test_cutout_hole_is_filled_with_the_dataset_mean():
    image = np.zeros((32, 32, 3), dtype=np.uint8)
    out = train_transform(_augment(cutout={"p": 1.0, "size": 16}), STATS, 32, seed=3)(image=image)
    pixels = np.rint(_pixels(out["image"]))
    hole = (pixels == STATS.fill).all(axis=-1)
    assert hole.sum() == 16 * 16


def test_crop_keeps_size_and_pads_with_the_mean():
    image = np.full((32, 32, 3), 255, dtype=np.uint8)
    transform = train_transform(_augment(crop={"p": 1.0, "padding": 4, "fill": "mean"}), STATS, 32, seed=0)
    shifted = 0
    for _ in range(20):
        pixels = np.rint(_pixels(transform(image=image)["image"]))
        assert pixels.shape == (32, 32, 3)
        border = ~(pixels == 255).all(axis=-1)
        assert ((pixels[border] == STATS.fill).all())
        shifted += border.any()
    assert shifted > 10  # most random crops show some padding


def test_hflip_mirrors_the_image():
    image = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    out = train_transform(_augment(hflip={"p": 1.0}), STATS, 32)(image=image)["image"]
    np.testing.assert_allclose(np.rint(_pixels(out)), image[:, ::-1], atol=0.5)


def test_wrong_argument_name_fails_loudly(monkeypatch):
    """A 1.x-era argument (CoarseDropout's max_holes) inside our pipeline is an error, not a warning."""
    original = A.CoarseDropout
    legacy = lambda **kwargs: original(max_holes=1, **kwargs)  # noqa: E731
    monkeypatch.setattr(A, "CoarseDropout", legacy)
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="max_holes"):
        train_transform(_augment(cutout={"p": 1.0, "size": 8}), STATS, 32)


def test_to_gray_makes_channels_equal():
    image = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    pixels = _pixels(train_transform(_augment(to_gray={"p": 1.0}), STATS, 32)(image=image)["image"])
    np.testing.assert_allclose(pixels[..., 0], pixels[..., 1], atol=1e-3)
    np.testing.assert_allclose(pixels[..., 1], pixels[..., 2], atol=1e-3)


@pytest.mark.parametrize("name, cfg", [("rotate", {"p": 1.0, "limit": 30}),
                                       ("shift_scale_rotate", {"p": 1.0, "shift": 0.2, "scale": 0.2, "rotate": 30})])
def test_geometric_transforms_keep_size_and_fill_corners_with_the_mean(name, cfg):
    image = np.full((32, 32, 3), 255, dtype=np.uint8)
    transform = train_transform(_augment(**{name: cfg}), STATS, 32, seed=1)
    filled = 0
    for _ in range(10):
        pixels = np.rint(_pixels(transform(image=image)["image"]))
        assert pixels.shape == (32, 32, 3)
        filled += (pixels == STATS.fill).all(axis=-1).sum()
    assert filled > 0  # rotated-in corners take the dataset mean, not black


def test_rotate_limit_zero_leaves_the_image_alone():
    image = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    out = train_transform(_augment(rotate={"p": 1.0, "limit": 0}), STATS, 32)(image=image)["image"]
    np.testing.assert_allclose(np.rint(_pixels(out)), image, atol=0.5)
