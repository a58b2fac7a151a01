"""What a user's photo folder may hold, read safely: the files predict is given or finds, each read
only if it can be a photo (a regular file of a photo's size: a FIFO or a device would block or
never end, a video or disk image would fill the memory), and each named so that a reader of the
output can tell it from every other file, whatever bytes its name holds."""
from __future__ import annotations

import os
import stat
from pathlib import Path

from PIL import Image

from cifarlab.core.errors import UserError
from cifarlab.download.filetree import OS_JUNK

MAX_PHOTO_BYTES = 1 << 30  # 1 GiB: above any image Pillow agrees to decode (its pixel limit x 3 x 16 bit ~ 0.5 GB)
SPECIAL_KINDS = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                 (stat.S_ISBLK, "a block device"), (stat.S_ISDIR, "an empty folder named like one"))


def image_files(targets: list[Path]) -> list[Path]:
    """The paths named, and everything under the folders named but folders and what the OS or
    the user hides (sorted, recursively): special files are listed, so each is refused by name,
    and so is an empty folder named like an image (holiday.jpg/), which a user took for one."""
    files = []
    for target in targets:
        if target.is_dir():
            files += sorted(path for path in target.rglob("*")
                            if not _hidden(path, target) and (not path.is_dir() or _empty_image_folder(path)))
        else:
            files.append(target)
    return files


def _empty_image_folder(path: Path) -> bool:
    return path.suffix.lower() in Image.registered_extensions() and not any(path.iterdir())


def _hidden(path: Path, top: Path) -> bool:
    parts = path.relative_to(top).parts
    return any(part.startswith(".") or part.lower() in OS_JUNK for part in parts)


def read_photo(path: Path) -> bytes:
    """The file's bytes if it can be a photo; otherwise a one-line UserError naming it, before
    a byte is read."""
    try:
        info = path.stat()
    except OSError as err:
        raise UserError(f"{shown_name(path)}: cannot be read ({err.strerror or err})") from None
    for is_kind, kind in SPECIAL_KINDS:
        if is_kind(info.st_mode):
            raise UserError(f"{shown_name(path)}: not an image file but {kind}; skipped")
    if info.st_size > MAX_PHOTO_BYTES:
        raise UserError(f"{shown_name(path)}: {info.st_size / 2**30:.1f} GiB, too large to be a photo (at most "
                        f"{MAX_PHOTO_BYTES // 2**30} GiB); skipped unread")
    try:
        with open(path, "rb") as handle:  # read(n) reserves n bytes first: the file's size, not the limit
            return handle.read(info.st_size)
    except OSError as err:
        raise UserError(f"{shown_name(path)}: cannot be read ({err.strerror or err})") from None


def shown_name(path: Path) -> str:
    """The path as printed and written to CSV: as it is when it is plain printable text; otherwise
    in single quotes with backslash escapes (a newline as \\n, a byte that is not UTF-8 as \\xNN),
    so no two files ever show alike and one name never looks like two lines."""
    text = os.fsencode(path).decode("utf-8", errors="surrogateescape")
    if text.isprintable() and "\\" not in text and not text.startswith("'"):
        return text
    shown = []
    for char in text:
        if 0xDC80 <= ord(char) <= 0xDCFF:  # surrogateescape's stand-in for a byte that is not UTF-8
            shown.append(f"\\x{ord(char) - 0xDC00:02x}")
        elif char in "\\'":
            shown.append("\\" + char)
        else:
            shown.append(char if char.isprintable() else char.encode("unicode_escape").decode("ascii"))
    return "'" + "".join(shown) + "'"
