"""Albumentations pipelines built from params.yaml's `augment` mapping. Augmentations run on
uint8 HWC images before normalisation, so padding and cut-out holes are filled with the
dataset mean; strict=True makes a wrong argument name an error instead of a warning."""
from __future__ import annotations

import os

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import albumentations as A  # noqa: E402
import cv2  # noqa: E402
from albumentations.pytorch import ToTensorV2  # noqa: E402


def mean_fill(mean: list[float]) -> tuple[int, ...]:
    """The dataset mean as a uint8 pixel, the neutral value after normalisation."""
    return tuple(int(round(m * 255)) for m in mean)


def _normalise(mean: list[float], std: list[float]) -> list:
    return [A.Normalize(mean=mean, std=std, max_pixel_value=255.0), ToTensorV2()]


def train_transform(aug: dict, mean: list[float], std: list[float], image_size: int,
                    seed: int | None = None) -> A.Compose:
    """The training pipeline: crop, flip, rotate, shift-scale-rotate, cutout, gray, normalise."""
    fill = mean_fill(mean)
    padded = image_size + 2 * aug["crop"]["padding"]
    cut = aug["cutout"]["size"]
    ssr = aug["shift_scale_rotate"]
    steps = [
        A.Sequential([
            A.PadIfNeeded(padded, padded, border_mode=cv2.BORDER_CONSTANT, fill=fill),
            A.RandomCrop(image_size, image_size),
        ], p=aug["crop"]["p"]),
        A.HorizontalFlip(p=aug["hflip"]["p"]),
        A.Rotate(limit=aug["rotate"]["limit"], border_mode=cv2.BORDER_CONSTANT, fill=fill,
                 p=aug["rotate"]["p"]),
        A.Affine(translate_percent=(-ssr["shift"], ssr["shift"]),
                 scale=(1 - ssr["scale"], 1 + ssr["scale"]), rotate=(-ssr["rotate"], ssr["rotate"]),
                 border_mode=cv2.BORDER_CONSTANT, fill=fill, p=ssr["p"]),
        A.CoarseDropout(num_holes_range=(1, 1), hole_height_range=(cut, cut),
                        hole_width_range=(cut, cut), fill=fill, p=aug["cutout"]["p"]),
        A.ToGray(num_output_channels=3, p=aug["to_gray"]["p"]),
    ]
    return A.Compose(steps + _normalise(mean, std), strict=True, seed=seed)


def eval_transform(mean: list[float], std: list[float]) -> A.Compose:
    """Test-time pipeline: normalisation only."""
    return A.Compose(_normalise(mean, std), strict=True)
