"""Albumentations pipelines built from params.yaml's `augment` section. Augmentations run on
uint8 HWC images before normalisation, so padding (unless it reflects the image) and cut-out
holes are filled with the dataset mean; strict=True makes a wrong argument name an error instead of a warning.
albumentations is imported where a pipeline is built: importing it slows every stage's start."""
from __future__ import annotations

from typing import TYPE_CHECKING

from cifarlab.stats import Stats

if TYPE_CHECKING:
    import albumentations as A

    from cifarlab.config import AugmentConfig


def _normalise(stats: Stats) -> list:
    import albumentations as A
    from albumentations.pytorch import ToTensorV2

    return [A.Normalize(mean=stats.mean, std=stats.std, max_pixel_value=255.0), ToTensorV2()]


def train_transform(aug: AugmentConfig, stats: Stats, image_size: int, seed: int | None = None) -> A.Compose:
    """The training pipeline: crop, flip, rotate, shift-scale-rotate, cutout, gray, normalise."""
    import albumentations as A
    import cv2

    fill = stats.fill
    padded = image_size + 2 * aug.crop.padding
    cut = aug.cutout.size
    ssr = aug.shift_scale_rotate
    steps = [
        A.Sequential([
            A.PadIfNeeded(padded, padded, border_mode=cv2.BORDER_CONSTANT, fill=fill) if aug.crop.fill == "mean"
            else A.PadIfNeeded(padded, padded, border_mode=cv2.BORDER_REFLECT_101),
            A.RandomCrop(image_size, image_size),
        ], p=aug.crop.p),
        A.HorizontalFlip(p=aug.hflip.p),
        A.Rotate(limit=aug.rotate.limit, border_mode=cv2.BORDER_CONSTANT, fill=fill, p=aug.rotate.p),
        A.Affine(translate_percent=(-ssr.shift, ssr.shift), scale=(1 - ssr.scale, 1 + ssr.scale),
                 rotate=(-ssr.rotate, ssr.rotate), border_mode=cv2.BORDER_CONSTANT, fill=fill, p=ssr.p),
        A.CoarseDropout(num_holes_range=(1, 1), hole_height_range=(cut, cut), hole_width_range=(cut, cut),
                        fill=fill, p=aug.cutout.p),
        A.ToGray(num_output_channels=3, p=aug.to_gray.p),
    ]
    return A.Compose(steps + _normalise(stats), strict=True, seed=seed)


def eval_transform(stats: Stats) -> A.Compose:
    """Test-time pipeline: normalisation only."""
    import albumentations as A

    return A.Compose(_normalise(stats), strict=True)
