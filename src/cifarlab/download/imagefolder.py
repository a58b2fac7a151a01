"""Image-folder trees, train/<class>/* and test/<class>/*, in a folder or an archive: any
PIL-readable format, brought to the configured size by model_input's rule; class names come from
the train folder names. Only the images the splits keep are read, and they are decoded in
parallel, one process per core."""
from __future__ import annotations

import io
import os
import posixpath
import unicodedata
import warnings
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError
from tqdm import tqdm

from cifarlab.core.errors import UserError
from cifarlab.download.filetree import FileTree
from cifarlab.model_input import square_input
from cifarlab.prepared import Prepared, split_indices

SPLITS = ("train", "test")
CHUNK = 2048  # images per decoding task: big enough that sending bytes to a worker is cheap


def is_image_tree(tree: FileTree, root: str) -> bool:
    return all(posixpath.join(root, split) in tree.dirs for split in SPLITS)


def class_name(folder: str) -> str:
    """A class folder's name as a class: in Unicode NFC form (a Mac writes accents decomposed,
    Linux composed), without surrounding spaces."""
    return unicodedata.normalize("NFC", folder).strip()


def class_key(name: str) -> str:
    """What two class names must share to be one class, for the download stage and score alike:
    the name, its case aside (`Cat` and `cat` are one class, never two)."""
    return class_name(name).casefold()


MATCHING = "class names are matched regardless of case, surrounding spaces and Unicode form"


def class_folders(tree: FileTree, folder: str) -> dict[str, str]:
    """class_key -> folder name of the class folders in `folder`; two folders of one class are refused."""
    folders: dict[str, str] = {}
    for name in tree.subdirs(folder):
        key = class_key(name)
        if key in folders:
            raise UserError(f"{tree.where(folder)}: folders {ascii(folders[key])} and {ascii(name)} are one class "
                            f"({MATCHING}); rename or merge one")
        folders[key] = name
    return folders


def _few(names: list[str], shown: int = 10) -> str:
    """Names for an error line, at most `shown` of them: a tree may have thousands of classes."""
    more = f" and {len(names) - shown:,} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def _scan(tree: FileTree, root: str) -> tuple[list[str], dict[str, tuple[list[str], np.ndarray]]]:
    """List every image file per split with its class index, checking the tree's shape."""
    train, test = (posixpath.join(root, split) for split in SPLITS)
    folders = {split: class_folders(tree, posixpath.join(root, split)) for split in SPLITS}
    classes = [class_name(folder) for folder in folders["train"].values()]
    if not classes:
        raise UserError(f"{tree.where(train)}: no class folders; expected train/<class>/<image files>")
    unknown = sorted(ascii(folder) for key, folder in folders["test"].items() if key not in folders["train"])
    if unknown:
        raise UserError(f"{tree.where(test)}: classes {_few(unknown)} are not in train/ ({MATCHING}); train has "
                        f"{_few([ascii(name) for name in classes])}")
    index = {key: i for i, key in enumerate(folders["train"])}
    listing = {}
    for split in SPLITS:
        names, labels = [], []
        for name, folder_name in folders[split].items():
            folder = posixpath.join(root, split, folder_name)
            files = tree.files_in(folder)
            if not files:
                raise UserError(f"{tree.where(folder)}: empty class folder; every class needs at least one image")
            names += files
            labels += [index[name]] * len(files)
        if not names:
            raise UserError(f"{tree.where(posixpath.join(root, split))}: no images; "
                            f"expected {split}/<class>/<image files>")
        listing[split] = (names, np.array(labels, dtype=np.int64))
    return classes, listing


def white_level(img: Image.Image, where: str) -> float:
    """The value that means white in an integer-mode image, from what its file declares (read it
    before any transpose, which drops the file's tags): 65535 for the 16-bit modes and for PGM/PPM
    (Pillow scales their maxval to 16 bits), 2^bits - 1 for a TIFF's declared bits per sample. A
    32-bit sample's white could be anything (tools store 8-bit values in it), so it is refused
    rather than guessed: a wrong guess makes an image silently near-black."""
    if img.mode.startswith("I;16") or img.format == "PPM":
        return 65535.0
    bits = img.tag_v2.get(258) if img.format == "TIFF" else None
    bits = bits[0] if isinstance(bits, tuple) and bits else bits
    if bits in (8, 16):
        return 2.0**bits - 1
    declared = " ".join(filter(None, [f"{bits}-bit" if bits else "an integer", img.format]))
    raise UserError(f"{where}: {declared} image whose white level is not stored in the file, so "
                    "its brightness cannot be known; save it as 8- or 16-bit")


def to_rgb8(img: Image.Image, where: str, white: float | None = None) -> Image.Image:
    """8-bit RGB of any mode Pillow opens. Integer greys deeper than 8 bits are scaled from `white`
    (white_level of the file), not clipped at 255; float images must hold values in 0..1 and are
    scaled by 255. Anything else Pillow converts itself (palette, CMYK, YCbCr, greyscale, alpha dropped)."""
    if img.mode.startswith("I"):  # I, I;16, I;16B, ...: 16-bit or 32-bit integers
        values = np.asarray(img).astype(np.float64)
        if values.min(initial=0) < 0:
            raise UserError(f"{where}: a {img.mode} image with negative values; expected unsigned pixels")
        white = white or white_level(img, where)
        if values.max(initial=0) > white:
            raise UserError(f"{where}: pixel values up to {values.max():g} in an image whose white is {white:g}")
        return Image.fromarray(np.round(values * 255 / white).astype(np.uint8)).convert("RGB")
    if img.mode == "F":
        values = np.asarray(img, dtype=np.float64)
        if not np.isfinite(values).all() or values.min(initial=0) < 0 or values.max(initial=0) > 1:
            raise UserError(f"{where}: a floating-point image with values outside 0..1 (from "
                            f"{values.min():g} to {values.max():g}); save it as 8- or 16-bit, or scale it to 0..1")
        return Image.fromarray(np.round(values * 255).astype(np.uint8)).convert("RGB")
    return img.convert("RGB")


SIGNATURES = {b"\x89PNG\r\n\x1a\n": "PNG", b"\xff\xd8\xff": "JPEG", b"GIF8": "GIF", b"II*\x00": "TIFF",
              b"MM\x00*": "TIFF"}  # how these formats' files begin, to name a damaged one as such


def _unknown(data: bytes, where: str) -> UserError:
    """Why Pillow could not tell what `data` is: empty, a damaged file of a known kind, or another kind."""
    if not data:
        return UserError(f"{where}: an empty file (0 bytes), not an image")
    for signature, kind in SIGNATURES.items():
        if data.startswith(signature):
            return UserError(f"{where}: a damaged {kind} file (its header cannot be read)")
    return UserError(f"{where}: not a readable image (not in a format Pillow knows; SVG, PDF and the like: "
                     "export them as PNG or JPEG)")


def read_rgb(data: bytes, where: str) -> Image.Image:
    """One image file's bytes as upright 8-bit RGB (its EXIF orientation applied); anything
    unreadable, damaged metadata included, is a UserError naming `where`: Pillow raises many
    kinds of exception on damaged files, none of which should end in a traceback. A PNG's
    checksums are verified first (Pillow's decoder ignores those of the pixel data), and the
    pixels are decoded before the EXIF is read, so each kind of damage is named as what it is."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)  # a few KB that decode to gigapixels
            if data.startswith(b"\x89PNG"):
                with Image.open(io.BytesIO(data)) as probe:
                    probe.verify()
            with Image.open(io.BytesIO(data)) as img:
                white = white_level(img, where) if img.mode.startswith("I") else None
                img.load()  # animated or multi-page: the first frame or page
                try:
                    upright = ImageOps.exif_transpose(img)
                except Exception as err:  # a damaged EXIF block: which way is up cannot be known
                    raise UserError(f"{where}: damaged EXIF metadata ({type(err).__name__}: {str(err)[:120]}); "
                                    "save the image again without it") from None
                return to_rgb8(upright, where, white)
    except UserError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise UserError(f"{where}: refusing an image of more than {Image.MAX_IMAGE_PIXELS:,} pixels "
                        "(a decompression bomb?)") from None
    except UnidentifiedImageError:
        raise _unknown(data, where) from None
    except (OSError, ValueError) as err:
        raise UserError(f"{where}: not a readable image ({err})") from None
    except Exception as err:  # SyntaxError, struct.error, IndexError, ... from a damaged file
        raise UserError(f"{where}: not a readable image ({type(err).__name__}: {str(err)[:120]})") from None


def decode_image(data: bytes, where: str, size: int) -> np.ndarray:
    """Decode one image as the model sees it (square_input's rule), uint8 (size, size, 3); an
    unreadable one is a UserError naming `where`."""
    return square_input(read_rgb(data, where), size)


def _decode_chunk(blobs: list[tuple[str, bytes]], size: int, max_pixels: int | None) -> np.ndarray:
    Image.MAX_IMAGE_PIXELS = max_pixels  # a spawned worker starts from Pillow's default
    return np.stack([decode_image(data, where, size) for where, data in blobs])


def _chunks(tree: FileTree, names: list[str]) -> Iterator[tuple[list[int], list[tuple[str, bytes]]]]:
    """(positions in `names`, [(where, bytes)]) in the tree's fastest reading order, CHUNK at a time."""
    position = {name: i for i, name in enumerate(names)}
    indices, blobs = [], []
    for name, data in tree.read(names):
        indices.append(position[name])
        blobs.append((tree.where(name), data))
        if len(blobs) == CHUNK:
            yield indices, blobs
            indices, blobs = [], []
    if blobs:
        yield indices, blobs


def _decoded(tree: FileTree, names: list[str], size: int) -> Iterator[tuple[list[int], np.ndarray]]:
    """(positions in `names`, their images) per chunk: decoded in this process for a small tree,
    else in one spawned worker process per core (spawned, so no thread state of the caller is copied)."""
    limit = Image.MAX_IMAGE_PIXELS
    workers = min(len(os.sched_getaffinity(0)), -(-len(names) // CHUNK))
    if workers <= 1:
        for indices, blobs in _chunks(tree, names):
            yield indices, _decode_chunk(blobs, size, limit)
        return
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        try:
            jobs = [(indices, pool.submit(_decode_chunk, blobs, size, limit))
                    for indices, blobs in _chunks(tree, names)]
            for indices, job in jobs:
                yield indices, job.result()
        except BaseException:  # a bad image or an interrupt: drop the queued work, not wait for it
            pool.shutdown(cancel_futures=True)
            raise


def decode_images(tree: FileTree, names: list[str], size: int) -> np.ndarray:
    """Decode `names` into one (N, size, size, 3) array, in parallel where there are many."""
    images = np.zeros((len(names), size, size, 3), np.uint8)
    # disable=None: no bar when not a terminal; the bar is closed before an error prints
    with tqdm(total=len(names), desc="decode", unit="img", leave=False, disable=None) as bar:
        for indices, decoded in _decoded(tree, names, size):
            images[indices] = decoded
            bar.update(len(indices))
    return images


def load_image_tree(tree: FileTree, root: str, image_size: int, subset: dict[str, int], val: int,
                    seed: int) -> Prepared:
    """Read the tree under `root`, decoding only the images the splits keep (all in one pass),
    each split in an order shuffled by `seed`."""
    classes, listing = _scan(tree, root)
    chosen = split_indices(listing["train"][1], listing["test"][1], subset, val, seed, classes)
    # a tree lists its images class by class: stored in that order, "the first N test images" would be
    # one class, so every split is stored in a seeded random order instead
    rng = np.random.default_rng(seed)
    chosen = {split: rng.permutation(indices) for split, indices in chosen.items()}
    source = {"train": "train", "val": "train", "test": "test"}
    names = [listing[source[split]][0][i] for split in source for i in chosen[split]]
    images = np.split(decode_images(tree, names, image_size), np.cumsum([len(chosen[split]) for split in source])[:-1])
    arrays = {split: (part, listing[source[split]][1][chosen[split]]) for split, part in zip(source, images)}
    sizes = (len(listing["train"][1]), len(listing["test"][1]))
    return Prepared(*arrays["train"], *arrays["test"], classes, *arrays["val"], sizes)
