"""Safe extraction of .tar.gz/.tgz/.tar/.zip archives: no member may land outside the target."""
from __future__ import annotations

import tarfile
import zipfile
from pathlib import Path, PurePosixPath

from cifarlab.errors import UserError

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")


def is_archive(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(ARCHIVE_SUFFIXES)


def _check_member_name(archive: Path, name: str) -> None:
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if name.startswith(("/", "\\")) or ".." in parts or (parts and ":" in parts[0]):
        raise UserError(f"{archive}: refusing member '{name}' (absolute path or '..' outside the archive)")


def extract_archive(archive: Path, dest: Path) -> None:
    """Extract `archive` into `dest`, refusing path traversal, links and device files."""
    try:
        if archive.name.lower().endswith(".zip"):
            with zipfile.ZipFile(archive) as zf:
                for info in zf.infolist():
                    _check_member_name(archive, info.filename)
                    if (info.external_attr >> 16) & 0o170000 == 0o120000:
                        raise UserError(f"{archive}: refusing symlink member '{info.filename}'")
                zf.extractall(dest)
        else:
            with tarfile.open(archive) as tf:
                for member in tf.getmembers():
                    _check_member_name(archive, member.name)
                    if not (member.isfile() or member.isdir()):
                        raise UserError(f"{archive}: refusing member '{member.name}' "
                                        "(links and device files are not allowed)")
                if hasattr(tarfile, "data_filter"):  # Python >= 3.10.12 / 3.11.4: a second, stdlib guard
                    tf.extractall(dest, filter="data")
                else:  # older Pythons: the member checks above are the guard
                    tf.extractall(dest)
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as err:
        raise UserError(f"{archive}: corrupt or truncated archive ({err})") from None
