"""The device path's augmentation: the albumentations pipeline of augment.py redone as torch
ops on whole uint8 batches wherever the batch lives (CPU or GPU), matching it step by step in
distribution (mean padding and fill, the same offset, angle, scale and hole ranges, the same rates)
rather than pixel for pixel."""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from cifarlab.config import AugmentConfig


class _Draws:
    """Per-image random draws for a batch of `n`, all from one generator on the batch's device."""

    def __init__(self, n: int, device: torch.device, generator: torch.Generator) -> None:
        self.n, self.device, self.generator = n, device, generator

    def uniform(self, low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(self.n, device=self.device, generator=self.generator)

    def chance(self, p: float) -> torch.Tensor:
        return torch.rand(self.n, device=self.device, generator=self.generator) < p

    def randint(self, high: int) -> torch.Tensor:
        return torch.randint(0, high + 1, (self.n,), device=self.device, generator=self.generator)


def augment_batch(images: torch.Tensor, augment: AugmentConfig, fill: torch.Tensor,
                  generator: torch.Generator, flipped: torch.Tensor | None = None) -> torch.Tensor:
    """The albumentations pipeline's steps, in its order, on a uint8 (N, C, H, W) batch, giving
    floats in 0-255, each per image with its own probability from params: random crop with mean
    padding, horizontal flip, rotation and shift-scale-rotation (one affine warp, mean fill), one
    mean-filled square hole, gray. An augmentation with p = 0 draws no random numbers, except the
    flip, which always draws (as it did from the start, so runs with hflip p = 0 keep their draws)
    unless `flipped` says which images to flip. With crop fill 'reflect' the padding mirrors the
    image at its edges (without repeating the edge pixel, as torch's reflect padding).

    Crop and flip only move pixels, so both are one gather of source pixels, taken from the uint8
    batch before it is widened to floats: a few passes over the batch in all, not one per step."""
    n, channels, height, width = images.shape
    device = images.device
    draw = _Draws(n, device, generator)
    rows = torch.arange(height, device=device).expand(n, height)
    cols = torch.arange(width, device=device).expand(n, width)
    pad = augment.crop.padding
    cropping = pad > 0 and augment.crop.p > 0
    if cropping:
        cropped = draw.chance(augment.crop.p)
        rows = rows + (torch.where(cropped, draw.randint(2 * pad), pad) - pad)[:, None]
        cols = cols + (torch.where(cropped, draw.randint(2 * pad), pad) - pad)[:, None]
    flipped = draw.chance(augment.hflip.p) if flipped is None else flipped
    cols = torch.where(flipped[:, None], cols.flip(-1), cols)
    mean_filled = None
    if cropping and augment.crop.fill == "reflect":
        rows, cols = _reflect(rows, height), _reflect(cols, width)
    elif cropping:  # (N, H, W) pixels to set to the dataset mean, in one pass where nothing moves them first
        mean_filled = ((rows < 0) | (rows >= height))[:, :, None] | ((cols < 0) | (cols >= width))[:, None, :]
    source = rows.clamp(0, height - 1)[:, :, None] * width + cols.clamp(0, width - 1)[:, None, :]
    images = images.reshape(n, channels, -1).gather(2, source.view(n, 1, -1).expand(n, channels, -1)).float()
    images = images.view(n, channels, height, width)
    if augment.rotate.p > 0 or augment.shift_scale_rotate.p > 0:
        images = _warp(_fill(images, mean_filled, fill), augment, fill, draw)
        mean_filled = None
    size = augment.cutout.size
    if augment.cutout.p > 0:
        top, left = draw.randint(height - size), draw.randint(width - size)
        inside_rows = _span(top, size, height)
        inside_cols = _span(left, size, width) & draw.chance(augment.cutout.p)[:, None]
        hole = inside_rows[:, :, None] & inside_cols[:, None, :]
        mean_filled = hole if mean_filled is None else mean_filled | hole
    images = _fill(images, mean_filled, fill)
    if augment.to_gray.p > 0:  # ITU-R 601 weights, as cv2's RGB2GRAY that albumentations' ToGray uses
        gray = 0.299 * images[:, 0:1] + 0.587 * images[:, 1:2] + 0.114 * images[:, 2:3]
        images = torch.where(draw.chance(augment.to_gray.p).view(n, 1, 1, 1), gray.expand_as(images), images)
    return images


def _reflect(positions: torch.Tensor, length: int) -> torch.Tensor:
    """Positions outside 0 .. length - 1 mirrored back inside (-1 -> 1, length -> length - 2)."""
    positions = positions.abs()
    return torch.where(positions >= length, 2 * (length - 1) - positions, positions)


def _span(start: torch.Tensor, size: int, length: int) -> torch.Tensor:
    """(N, length) mask of positions start .. start + size - 1, per image."""
    positions = torch.arange(length, device=start.device)
    return (positions >= start[:, None]) & (positions < start[:, None] + size)


def _fill(images: torch.Tensor, where: torch.Tensor | None, fill: torch.Tensor) -> torch.Tensor:
    """The images with the dataset mean at the (N, H, W) mask's pixels (None: no pixel)."""
    return images if where is None else torch.where(where[:, None], fill.view(1, -1, 1, 1), images)


def _warp(images: torch.Tensor, augment: AugmentConfig, fill: torch.Tensor, draw: _Draws) -> torch.Tensor:
    """Rotate (angle within +/- rotate.limit), then shift-scale-rotate as albumentations' Affine
    draws it (shift a whole number of pixels below shift * size, x and y scales apart, angle within
    +/- rotate), about the image centre; both in one bilinear warp, filled with the dataset mean.
    Only Python numbers enter the batch's tensors: no host-to-device copy per step."""
    n, _, height, width = images.shape

    def rotation(degrees: torch.Tensor) -> torch.Tensor:
        cos, sin = torch.cos(torch.deg2rad(degrees)), torch.sin(torch.deg2rad(degrees))
        return torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)

    rot, ssr = augment.rotate, augment.shift_scale_rotate
    rotating, shifting = draw.chance(rot.p), draw.chance(ssr.p)
    first = torch.where(rotating, draw.uniform(-rot.limit, rot.limit), 0.0)
    second = torch.where(shifting, draw.uniform(-ssr.rotate, ssr.rotate), 0.0)
    scales = torch.stack([draw.uniform(1 - ssr.scale, 1 + ssr.scale) for _ in "xy"], -1)
    scales = torch.where(shifting[:, None], scales, 1.0)
    # whole pixels, then in grid_sample's [-1, 1] coordinates (half a side is 1)
    shifts = torch.stack([torch.trunc(draw.uniform(-ssr.shift, ssr.shift) * side) / (side / 2)
                          for side in (width, height)], -1)
    shifts = torch.where(shifting[:, None], shifts, 0.0)
    # output pixel -> input pixel about the centre, in [-1, 1] coordinates: K^-1 A K, K = diag(width/2, height/2)
    inverse = rotation(-first) @ torch.diag_embed(1 / scales) @ rotation(-second)
    inverse[:, 0, 1] *= width / height
    inverse[:, 1, 0] *= height / width
    theta = torch.cat([inverse, -(inverse @ shifts[..., None])], -1)
    grid = torch.nn.functional.affine_grid(theta, list(images.shape), align_corners=False)
    background = fill.view(1, -1, 1, 1)
    warped = torch.nn.functional.grid_sample(images - background, grid, mode="bilinear", padding_mode="zeros",
                                             align_corners=False) + background
    return torch.where((rotating | shifting).view(n, 1, 1, 1), warped, images)
