"""The 15 common corruptions of CIFAR-10-C, 5 severities each, for any batch of square images.

Hendrycks & Dietterich, "Benchmarking Neural Network Robustness to Common Corruptions and
Perturbations" (ICLR 2019) made CIFAR-10-C by applying 15 corruptions in four families (noise,
blur, weather, digital) to the test set. The parameters below are the ones their script uses for
32x32 images (make_cifar_c.py in hendrycks/robustness), which are milder than ImageNet-C's; the
code is ours, in numpy/scipy/Pillow, on whole batches. Where we knowingly differ:
- frost: blends in crops of the benchmark's frost photographs (robustness.frost, see frost.py);
  where none can be had, a generated ice texture at the same weights, which is not the benchmark's;
- motion blur (and the snow streaks): the benchmark calls ImageMagick; here the same kernel (a
  one-sided Gaussian trail along a random angle, edge pixels repeated) is applied directly.
Each function takes float images in [0, 1], shape (N, H, W, 3), and may return values outside
[0, 1]; `corrupt` clips and stores them in 8 bits, as the benchmark's arrays are."""
from __future__ import annotations

from collections.abc import Callable
from io import BytesIO

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw
from scipy import ndimage

from cifarlab.robustness.frost import photo_frost

Corruption = Callable[[np.ndarray, int, np.random.Generator], np.ndarray]


# --- helpers --------------------------------------------------------------------------------

def _gaussian_blur(x: np.ndarray, sigma: float) -> np.ndarray:
    """Blur each image and channel; skimage.filters.gaussian's edges (nearest) and reach (4 sigma)."""
    return ndimage.gaussian_filter(x, sigma=(0, sigma, sigma, 0), mode="nearest", truncate=4.0)


def _disk_kernel(radius: float, alias_blur: float) -> np.ndarray:
    """A lens's out-of-focus disk, softened by a 3x3 Gaussian so small radii are not all-or-nothing."""
    offsets = np.arange(-8, 9)
    xx, yy = np.meshgrid(offsets, offsets)
    disk = (xx ** 2 + yy ** 2 <= radius ** 2).astype(np.float64)
    taps = np.exp(-np.arange(-1, 2) ** 2 / (2 * alias_blur ** 2))
    kernel = ndimage.correlate(disk / disk.sum(), np.outer(taps, taps) / taps.sum() ** 2, mode="mirror")
    rows, cols = np.flatnonzero(kernel.any(1)), np.flatnonzero(kernel.any(0))
    return kernel[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]


def _motion_trail(x: np.ndarray, radius: int, sigma: float, angles: np.ndarray) -> np.ndarray:
    """Each image (N, H, W, C) averaged with itself shifted 0..2*radius pixels along its own angle
    (radians), the shifts weighted by a one-sided Gaussian: ImageMagick's MotionBlurImage."""
    n, h, w = x.shape[:3]
    distance = np.arange(2 * radius + 1)
    weights = np.exp(-distance ** 2 / (2 * sigma ** 2))
    weights /= weights.sum()
    out = np.zeros_like(x)
    image = np.arange(n)[:, None, None]
    for step, weight in zip(distance, weights):
        dx = np.ceil(step * np.cos(angles) - 0.5).astype(int)
        dy = np.ceil(step * np.sin(angles) - 0.5).astype(int)
        rows = np.clip(np.arange(h)[None, :] + dy[:, None], 0, h - 1)[:, :, None]
        cols = np.clip(np.arange(w)[None, :] + dx[:, None], 0, w - 1)[:, None, :]
        out += weight * x[image, rows, cols]
    return out


def _clipped_zoom(x: np.ndarray, factor: float) -> np.ndarray:
    """The centre of each image magnified by `factor`, cut back to the image's size. Bilinear with
    corners kept in place (align_corners), as scipy.ndimage.zoom does in the benchmark."""
    side = x.shape[1]
    crop = int(np.ceil(side / factor))
    top = (side - crop) // 2
    centre = torch.from_numpy(np.ascontiguousarray(x[:, top:top + crop, top:top + crop])).permute(0, 3, 1, 2)
    zoomed = F.interpolate(centre, size=(round(crop * factor),) * 2, mode="bilinear", align_corners=True)
    trim = (zoomed.shape[2] - side) // 2
    return zoomed[:, :, trim:trim + side, trim:trim + side].permute(0, 2, 3, 1).numpy()


def _plasma(n: int, side: int, decay: float, rng: np.random.Generator) -> np.ndarray:
    """n fractal cloud maps (N, side, side) in [0, 1], by the diamond-square algorithm: corners
    are averaged into midpoints plus random jitter, the jitter shrinking by `decay` per level."""
    size = 1 << max(side - 1, 1).bit_length()  # a power of two covering the image
    maps = np.zeros((n, size, size))
    step, wibble = size, 100.0

    def jittered(total: np.ndarray) -> np.ndarray:
        return total / 4 + wibble * rng.uniform(-wibble, wibble, total.shape)

    while step >= 2:
        half = step // 2
        corners = maps[:, 0::step, 0::step]
        square = corners + np.roll(corners, -1, axis=1)
        maps[:, half::step, half::step] = jittered(square + np.roll(square, -1, axis=2))
        centres, corners = maps[:, half::step, half::step], maps[:, 0::step, 0::step]
        maps[:, 0::step, half::step] = jittered(centres + np.roll(centres, 1, axis=1)
                                                + corners + np.roll(corners, -1, axis=2))
        maps[:, half::step, 0::step] = jittered(centres + np.roll(centres, 1, axis=2)
                                                + corners + np.roll(corners, -1, axis=1))
        step, wibble = half, wibble / decay
    maps -= maps.min(axis=(1, 2), keepdims=True)
    maps /= maps.max(axis=(1, 2), keepdims=True)
    return maps[:, :side, :side]


def _frost_texture(n: int, side: int, rng: np.random.Generator) -> np.ndarray:
    """Generated frost (N, side, side, 3) in [0, 1]: a rough pale cloud crossed by thin bright
    ice needles, tinted blue-white like the benchmark's frost photographs."""
    texture = 0.25 + 0.35 * _plasma(n, side, 1.4, rng)
    for k in range(n):
        needles = Image.new("L", (side, side))
        draw = ImageDraw.Draw(needles)
        low, high = (0, 0, side / 10, 0, 150), (side, side, side / 2.5, np.pi, 255)  # x, y, length, angle, shade
        for x0, y0, length, angle, shade in rng.uniform(low, high, size=(6, 5)):
            draw.line((x0, y0, x0 + length * np.cos(angle), y0 + length * np.sin(angle)), fill=int(shade))
        texture[k] = np.maximum(texture[k], np.asarray(needles, dtype=np.float64) / 255)
    return texture[..., None] * np.array([0.85, 0.93, 1.0])


def _per_image(x: np.ndarray, change: Callable[[Image.Image], Image.Image]) -> np.ndarray:
    """Pillow's `change` on each image as 8-bit RGB, as the benchmark applies it."""
    as_bytes = np.rint(np.clip(x, 0, 1) * 255).astype(np.uint8)
    return np.stack([np.asarray(change(Image.fromarray(image)).convert("RGB")) for image in as_bytes]) / 255


def _grey(x: np.ndarray) -> np.ndarray:
    return x @ np.array([0.299, 0.587, 0.114], dtype=x.dtype)  # ITU-R BT.601 luma, as OpenCV's RGB2GRAY


# --- noise ------------------------------------------------------------------------------------

def gaussian_noise(x, severity, rng):
    sigma = (0.04, 0.06, 0.08, 0.09, 0.10)[severity - 1]
    return x + rng.normal(scale=sigma, size=x.shape)


def shot_noise(x, severity, rng):
    photons = (500, 250, 100, 75, 50)[severity - 1]  # fewer photons per unit of light, more noise
    return rng.poisson(x * photons) / photons


def impulse_noise(x, severity, rng):
    amount = (0.01, 0.02, 0.03, 0.05, 0.07)[severity - 1]  # the fraction of values set to 0 or 1
    hit = rng.random(x.shape) < amount
    return np.where(hit, (rng.random(x.shape) < 0.5).astype(x.dtype), x)


# --- blur -------------------------------------------------------------------------------------

def defocus_blur(x, severity, rng):
    radius, alias_blur = ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1))[severity - 1]
    kernel = _disk_kernel(radius, alias_blur)
    return ndimage.correlate(x, kernel[None, :, :, None], mode="mirror")


def glass_blur(x, severity, rng):
    """Blur, jitter every pixel by copying a neighbour's value into it, blur again (frosted glass).
    The benchmark means to swap the two pixels, but its swap of numpy views copies: so do we."""
    sigma, reach, rounds = ((0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2))[severity - 1]
    x = np.floor(_gaussian_blur(x, sigma) * 255) / 255  # the benchmark stores the first blur in 8 bits
    n, h, w = x.shape[:3]
    image = np.arange(n)
    for _ in range(rounds):
        for row in range(h - reach, reach, -1):
            for col in range(w - reach, reach, -1):
                dy, dx = rng.integers(-reach, reach, size=(2, n))  # -1 or 0: the benchmark's randint excludes +1
                x[image, row, col] = x[image, row + dy, col + dx]
    return _gaussian_blur(x, sigma)


def motion_blur(x, severity, rng):
    radius, sigma = ((6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5))[severity - 1]
    return _motion_trail(x, radius, sigma, np.radians(rng.uniform(-45, 45, len(x))))


def zoom_blur(x, severity, rng):
    largest = (1.06, 1.11, 1.16, 1.21, 1.26)[severity - 1]
    factors = np.arange(1, largest, 0.01)
    return (x + sum(_clipped_zoom(x, factor) for factor in factors)) / (len(factors) + 1)


# --- weather ----------------------------------------------------------------------------------

def snow(x, severity, rng):
    mean, spread, zoom, threshold, radius, sigma, keep = (
        (0.1, 0.2, 1, 0.6, 8, 3, 0.95), (0.1, 0.2, 1, 0.5, 10, 4, 0.9), (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
        (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85), (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8))[severity - 1]
    flakes = _clipped_zoom(rng.normal(mean, spread, size=(*x.shape[:3], 1)), zoom)
    flakes = np.floor(np.clip(np.where(flakes < threshold, 0, flakes), 0, 1) * 255) / 255  # an 8-bit layer
    flakes = _motion_trail(flakes, radius, sigma, np.radians(rng.uniform(-135, -45, len(x))))
    whitened = keep * x + (1 - keep) * np.maximum(x, _grey(x)[..., None] * 1.5 + 0.5)
    return whitened + flakes + np.rot90(flakes, k=2, axes=(1, 2))


def frost(x, severity, rng, photos=None):
    """The image dimmed and a frost layer added: crops of `photos` (frost.py), else the drawn texture."""
    image_weight, frost_weight = ((1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45))[severity - 1]
    n, side = len(x), x.shape[1]
    layer = _frost_texture(n, side, rng) if photos is None else photo_frost(n, side, photos, rng)
    return image_weight * x + frost_weight * layer


def fog(x, severity, rng):
    thickness, decay = ((0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75))[severity - 1]
    peak = x.max(axis=(1, 2, 3), keepdims=True)
    fogged = x + thickness * _plasma(len(x), x.shape[1], decay, rng)[..., None]
    return fogged * peak / (peak + thickness)


def brightness(x, severity, rng):
    """HSV's value (the largest channel) raised and clipped at 1, hue and saturation kept: that
    scales the three channels together, or lifts a black pixel to grey."""
    lift = (0.05, 0.1, 0.15, 0.2, 0.3)[severity - 1]
    value = x.max(axis=3, keepdims=True)
    raised = np.minimum(value + lift, 1)
    return np.where(value > 0, x * raised / np.maximum(value, 1e-12), raised)


# --- digital ----------------------------------------------------------------------------------

def contrast(x, severity, rng):
    keep = (0.75, 0.5, 0.4, 0.3, 0.15)[severity - 1]
    means = x.mean(axis=(1, 2), keepdims=True)
    return (x - means) * keep + means


def _resample(images: torch.Tensor, x: torch.Tensor, y: torch.Tensor, edges_at_centres: bool) -> torch.Tensor:
    """images (N, C, H, W) sampled bilinearly at pixel coordinates x, y (N, H, W), mirrored past
    the border: about the edge pixels' centres (OpenCV's REFLECT_101) or about their outer edges."""
    side = images.shape[-1]
    if edges_at_centres:
        grid = torch.stack([x, y], dim=-1) * 2 / (side - 1) - 1
    else:
        grid = (torch.stack([x, y], dim=-1) + 0.5) * 2 / side - 1
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="reflection", align_corners=edges_at_centres)


def elastic_transform(x, severity, rng):
    """A random small affine warp, then a smooth random displacement field (sizes in image widths)."""
    n, side = len(x), x.shape[1]
    alpha, smoothness, shake = (side * f for f in ((0, 0, 0.08), (0.05, 0.2, 0.07), (0.08, 0.06, 0.06),
                                                   (0.1, 0.04, 0.05), (0.1, 0.03, 0.03))[severity - 1])
    centre, reach = side // 2, side // 3
    anchors = np.array([[centre + reach, centre + reach], [centre + reach, centre - reach],
                        [centre - reach, centre - reach]], dtype=np.float64)  # (x, y) points
    moved = anchors + rng.uniform(-shake, shake, (n, 3, 2))
    forward = np.linalg.solve(np.c_[anchors, np.ones(3)][None], moved).transpose(0, 2, 1)  # (N, 2, 3)
    rows, cols = np.mgrid[0:side, 0:side].astype(np.float64)
    offset = np.stack([cols, rows])[None] - forward[:, :, 2, None, None]  # each output pixel's source...
    source = np.einsum("nij,njhw->nihw", np.linalg.inv(forward[:, :, :2]), offset)  # ...under the inverse map
    images = torch.from_numpy(x).permute(0, 3, 1, 2)
    warped = _resample(images, *torch.from_numpy(source).unbind(1), edges_at_centres=True)
    shift = np.stack([alpha * ndimage.gaussian_filter(rng.uniform(-1, 1, (side, side)), smoothness,
                                                      mode="reflect", truncate=3) for _ in range(2 * n)])
    dx, dy = torch.from_numpy(shift.reshape(n, 2, side, side)).unbind(1)
    out = _resample(warped, torch.from_numpy(cols) + dx, torch.from_numpy(rows) + dy, edges_at_centres=False)
    return out.permute(0, 2, 3, 1).numpy()


def pixelate(x, severity, rng):
    scale = (0.95, 0.9, 0.85, 0.75, 0.65)[severity - 1]
    side = x.shape[1]
    small = (int(side * scale),) * 2
    return _per_image(x, lambda image: image.resize(small, Image.BOX).resize((side, side), Image.BOX))


def jpeg_compression(x, severity, rng):
    quality = (80, 65, 58, 50, 40)[severity - 1]

    def recompress(image: Image.Image) -> Image.Image:
        buffer = BytesIO()
        image.save(buffer, "JPEG", quality=quality)
        return Image.open(buffer)

    return _per_image(x, recompress)


FAMILIES: dict[str, tuple[Corruption, ...]] = {
    "noise": (gaussian_noise, shot_noise, impulse_noise),
    "blur": (defocus_blur, glass_blur, motion_blur, zoom_blur),
    "weather": (snow, frost, fog, brightness),
    "digital": (contrast, elastic_transform, pixelate, jpeg_compression),
}
CORRUPTIONS: dict[str, Corruption] = {f.__name__: f for family in FAMILIES.values() for f in family}
SEVERITIES = (1, 2, 3, 4, 5)


def corrupt(images: np.ndarray, name: str, severity: int, rng: np.random.Generator,
            frost_photos: tuple[np.ndarray, ...] | None = None) -> np.ndarray:
    """uint8 images (N, H, W, 3) under corruption `name` at `severity` (0: unchanged, 1-5); frost
    from `frost_photos` (frost.frost_source) or, without them, the drawn texture."""
    if severity == 0:
        return images.copy()
    x = images.astype(np.float64) / 255
    changed = frost(x, severity, rng, frost_photos) if name == "frost" else CORRUPTIONS[name](x, severity, rng)
    return (np.clip(changed, 0, 1) * 255).astype(np.uint8)  # truncated to 8 bits, as the benchmark stores them
