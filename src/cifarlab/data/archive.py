"""Safe extraction of .tar.gz/.tgz/.tar/.zip archives: no member may land outside the target."""
from __future__ import annotations

import tarfile
import zipfile
from pathlib import Path, PurePosixPath

from cifarlab.errors import UserError

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")
# Sizes declared in the archive's headers, checked before anything is extracted: an image or a
# CIFAR batch (31 MB) fits 64 MiB many times over, and 512 GiB holds ImageNet (~150 GB); a
# decompression bomb (a few MB that unpack to gigabytes of zeros) does not.
MAX_MEMBER_BYTES = 64 * 2**20
MAX_TOTAL_BYTES = 512 * 2**30


def is_archive(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(ARCHIVE_SUFFIXES)


def _check_member_name(archive: Path, name: str) -> None:
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if name.startswith(("/", "\\")) or ".." in parts or (parts and ":" in parts[0]):
        raise UserError(f"{archive}: refusing member '{name}' (absolute path or '..' outside the archive)")


def _check_sizes(archive: Path, sizes: list[tuple[str, int]]) -> None:
    for name, size in sizes:
        if size > MAX_MEMBER_BYTES:
            raise UserError(f"{archive}: {name}: refusing a member of {size:,} bytes (the limit is "
                            f"{MAX_MEMBER_BYTES // 2**20} MiB per file; a decompression bomb?)")
    total = sum(size for _, size in sizes)
    if total > MAX_TOTAL_BYTES:
        raise UserError(f"{archive}: refusing {total:,} bytes in all (the limit is {MAX_TOTAL_BYTES // 2**30} GiB)")


def extract_archive(archive: Path, dest: Path) -> None:
    """Extract `archive` into `dest`, refusing path traversal, links and device files."""
    try:
        if archive.name.lower().endswith(".zip"):
            with zipfile.ZipFile(archive) as zf:
                for info in zf.infolist():
                    _check_member_name(archive, info.filename)
                    if (info.external_attr >> 16) & 0o170000 == 0o120000:
                        raise UserError(f"{archive}: refusing symlink member '{info.filename}'")
                _check_sizes(archive, [(info.filename, info.file_size) for info in zf.infolist()])
                zf.extractall(dest)
        else:
            with tarfile.open(archive) as tf:
                for member in tf.getmembers():
                    _check_member_name(archive, member.name)
                    if not (member.isfile() or member.isdir()):
                        raise UserError(f"{archive}: refusing member '{member.name}' "
                                        "(links and device files are not allowed)")
                _check_sizes(archive, [(member.name, member.size) for member in tf.getmembers()])
                if hasattr(tarfile, "data_filter"):  # Python >= 3.10.12 / 3.11.4: a second, stdlib guard
                    tf.extractall(dest, filter="data")
                else:  # older Pythons: the member checks above are the guard
                    tf.extractall(dest)
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as err:
        raise UserError(f"{archive}: corrupt or truncated archive ({err})") from None
