"""The frost of CIFAR-10-C: crops of the benchmark's own frost photographs, blended into each image.

Hendrycks & Dietterich published six photographs of frost beside their corruption scripts
(hendrycks/robustness, ImageNet-C/create_c/, Apache-2.0); the CIFAR script draws each image's
frost from the first five, shrunk to a fifth of their size, as a 32-pixel crop at a random place.
`robustness.frost` says where the photographs come from: `benchmark` (that repository, at a fixed
commit, each file checked against its sha256 and kept under data/raw/frost/), another URL serving
the same files, a local folder holding them, or `drawn`, a generated ice texture for when none can
be had. The texture looks like frost but changes an image less than the photographs do, so with it
frost, and the mean over corruptions, are not the benchmark's: the metrics and the report say so."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cifarlab.core.errors import UserError, set_key
from cifarlab.core.paths import RAW_DIR, user_path
from cifarlab.download.fetch import digest, fetch

BENCHMARK = "benchmark"
DRAWN = "drawn"
BENCHMARK_URL = ("https://raw.githubusercontent.com/hendrycks/robustness/"
                 "8190fe329f5f072a06e3a2aea02bb5dda69aed9f/ImageNet-C/create_c/")
# the five the CIFAR script draws from (its list names a sixth that its randint(5) never picks)
PHOTOS = {
    "frost1.png": "ff9f907860bd7a835d459e32f9d588062b7f61ee267343cc7222b56753a14755",
    "frost2.png": "fe211a89b336999c207a852ce05818d4545d0b57c5beadd824b4cc9d9a9b6137",
    "frost3.png": "2d0d50b4a9bb213f38b024ef7768731bb83cc08d2f26b5766bbc167cdfa0e504",
    "frost4.jpg": "3f8b91ca1a9fa7167b09e773da53f5ae60d0a1fd88f02a783f6e328a72887f6e",
    "frost5.jpg": "5fc6a19df4a429ba68abdcc8f8a4278d4c9f81c9ccafd2c92ab0c8cf8992ebd2",
}
SHRINK_AT_32 = 0.2  # the script's cv2.resize(fx=fy=0.2) for 32-pixel images; other sizes scale it alike
CACHE = RAW_DIR / "frost"
ALLOWED = ("'benchmark' (download the benchmark's photographs), an http(s) URL serving them, a folder "
           f"holding {', '.join(PHOTOS)}, or 'drawn' (a generated texture, not the benchmark's)")


@dataclass(frozen=True)
class FrostSource:
    """The photographs (RGB floats in [0, 1], shrunk for the images' size), or None for the drawn
    texture, and in words where they came from."""
    photos: tuple[np.ndarray, ...] | None
    provenance: str

    @property
    def is_benchmark(self) -> bool:
        return self.photos is not None

    @property
    def kind(self) -> str:
        """In two words, for the metrics (where `dvc exp show` puts it in a column) and the report."""
        return "benchmark photographs" if self.is_benchmark else "drawn texture"


def _checked_folder(folder: Path, setting: str) -> dict[str, Path]:
    """The five photographs in `folder`, each the benchmark's byte for byte, or one line saying which is not."""
    if not folder.is_dir():
        raise UserError(f"robustness.frost = {setting!r}: no such folder; expected {ALLOWED}")
    files = {name: folder / name for name in PHOTOS}
    for name, path in files.items():
        if not path.is_file():
            raise UserError(f"robustness.frost = {setting!r}: {name} is missing; the folder must hold "
                            f"{', '.join(PHOTOS)} from hendrycks/robustness ImageNet-C/create_c/")
        if digest(path, "sha256") != PHOTOS[name]:
            raise UserError(f"robustness.frost = {setting!r}: {name} is not the benchmark's photograph "
                            f"(sha256 differs from {PHOTOS[name]})")
    return files


def _downloaded(base_url: str) -> dict[str, Path]:
    how_to_fix = (f"copy {', '.join(PHOTOS)} from {BENCHMARK_URL} into a folder and "
                  f"{set_key('robustness.frost', 'FOLDER')}")
    return {name: fetch(base_url.rstrip("/") + "/" + name, CACHE / name, "sha256", expected, how_to_fix)
            for name, expected in PHOTOS.items()}


def _shrunk(path: Path, side: int) -> np.ndarray:
    """One photograph as the script reads it: decoded by OpenCV, shrunk with its bilinear resize,
    turned from BGR to RGB."""
    import cv2

    scale = SHRINK_AT_32 * side / 32
    photo = cv2.resize(cv2.imread(str(path)), (0, 0), fx=scale, fy=scale)
    return photo[..., ::-1].astype(np.float64) / 255


def frost_source(setting: str, side: int) -> FrostSource:
    """The frost `robustness.frost` asks for, for `side`-pixel images. A folder that is not the
    benchmark's is refused; a download that fails falls back to the drawn texture, saying why."""
    if setting == DRAWN:
        return FrostSource(None, "drawn texture (robustness.frost: drawn), not the benchmark's photographs")
    if setting == BENCHMARK or setting.startswith(("http://", "https://")):
        url = BENCHMARK_URL if setting == BENCHMARK else setting
        try:
            files = _downloaded(url)
        except UserError as err:
            return FrostSource(None, f"drawn texture, not the benchmark's photographs: {err}")
        where = "hendrycks/robustness@8190fe3" if setting == BENCHMARK else url
    else:
        files, where = _checked_folder(user_path(setting), setting), setting
    return FrostSource(tuple(_shrunk(path, side) for path in files.values()), f"the benchmark's photographs ({where})")


def photo_frost(n: int, side: int, photos: tuple[np.ndarray, ...], rng: np.random.Generator) -> np.ndarray:
    """n frost layers (N, side, side, 3): for each image a photograph drawn at random and a crop of
    it at a random place, the corner drawn from [0, height - side) x [0, width - side) as the
    script's randint draws it."""
    layers = np.empty((n, side, side, 3))
    for k in range(n):
        photo = photos[rng.integers(len(photos))]
        top, left = rng.integers(0, photo.shape[0] - side), rng.integers(0, photo.shape[1] - side)
        layers[k] = photo[top:top + side, left:left + side]
    return layers
