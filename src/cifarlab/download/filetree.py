"""A folder or an archive read alike, with nothing extracted to disk: the files under it by
relative POSIX name, their bytes in the order its storage reads fastest, and for errors a name
the user can find (`data.tar.gz: train/cat/1.png`, or the file's own path, never a temp path).

Archives are checked from their headers before any member is read: no path outside the
archive, no links or device files, and no decompression bomb."""
from __future__ import annotations

import lzma
import os
import posixpath
import tarfile
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath

from cifarlab.core.errors import UserError, first_line, set_key

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar.xz", ".txz", ".tar.bz2", ".tbz2", ".tar", ".zip")
# Sizes declared in the headers, checked before anything is read: an image or a CIFAR batch
# (31 MB) fits 64 MiB many times over, and 512 GiB holds ImageNet (~150 GB); a decompression
# bomb (a few MB that unpack to gigabytes) does not.
MAX_MEMBER_BYTES = 64 * 2**20
MAX_TOTAL_BYTES = 512 * 2**30


def is_archive(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(ARCHIVE_SUFFIXES)


class FileTree:
    """The regular files (`files`) and folders (`dirs`) under one root, by relative POSIX name."""

    label: str = "data.source"  # the folder or archive, as errors name it

    def __init__(self, files: Iterable[str], dirs: Iterable[str]) -> None:
        self.files = set(files)
        self.dirs = set(dirs) | {parent for name in self.files for parent in _parents(name)}
        # each folder's visible children, listed once: asking per folder stays linear in the tree
        self._children: dict[str, tuple[list[str], list[str]]] = {}
        for kind, names in ((0, self.dirs), (1, self.files)):
            for name in sorted(names):
                if _visible(name):
                    _check_text(self.label, name)
                    self._children.setdefault(posixpath.dirname(name), ([], []))[kind].append(name)

    def where(self, name: str) -> str:
        """`name` as the user can find it: `archive: member` (a folder's files override this)."""
        return f"{self.label}: {name}" if name else self.label

    def read(self, names: Iterable[str]) -> Iterator[tuple[str, bytes]]:
        """Yield (name, bytes) for each of `names`, in the order the storage reads fastest."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the open archive, if any."""

    def __enter__(self) -> FileTree:
        return self

    def __exit__(self, *_exc) -> None:
        self.close()

    def subdirs(self, folder: str) -> list[str]:
        """Sorted names of the visible folders directly inside `folder`."""
        return [posixpath.basename(d) for d in self._children.get(folder, ([], []))[0]]

    def files_in(self, folder: str) -> list[str]:
        """Sorted full names of the visible files directly inside `folder`."""
        return list(self._children.get(folder, ([], []))[1])

    def files_under(self, folder: str) -> list[str]:
        """Sorted full names of the visible files in `folder` and in every visible folder below it."""
        found, todo = [], [folder]
        while todo:
            folders, files = self._children.get(todo.pop(), ([], []))
            found += files
            todo += folders
        return sorted(found)


class FolderTree(FileTree):
    def __init__(self, root: Path) -> None:
        self.root, self.label = root, str(root)
        files, dirs, seen = [], [], {os.path.realpath(root)}
        for folder, subfolders, names in os.walk(root, followlinks=True):
            rel = Path(folder).relative_to(root).as_posix()
            rel = "" if rel == "." else rel
            subfolders[:] = [d for d in subfolders if _first_visit(os.path.join(folder, d), seen)]
            dirs += [posixpath.join(rel, d) for d in subfolders]
            files += [posixpath.join(rel, n) for n in names if os.path.isfile(os.path.join(folder, n))]
        super().__init__(files, dirs)

    def where(self, name: str) -> str:
        return str(self.root / name)

    def read(self, names: Iterable[str]) -> Iterator[tuple[str, bytes]]:
        for name in names:
            path = self.root / name
            try:
                _check_size(self, name, path.stat().st_size)
                yield name, path.read_bytes()
            except OSError as err:
                raise UserError(f"{path}: cannot read ({err.strerror or err})") from None


class _ArchiveTree(FileTree):
    """An archive's members, checked from its headers when it is opened: `entries` gives each
    member's name, kind ('file', 'dir' or anything else, which is refused), size and handle."""

    def __init__(self, archive: Path, entries: Iterable[tuple[str, str, int, object]]) -> None:
        self.label = str(archive)
        self._handles, sizes, dirs = {}, {}, []
        for raw_name, kind, size, handle in entries:
            name = _checked_name(archive, raw_name)
            if kind == "dir":
                dirs.append(name)
            elif kind == "file":
                self._handles[name], sizes[name] = handle, size
            else:
                raise UserError(f"{archive}: refusing member '{raw_name}' (links and device files are not allowed)")
        _check_sizes(self, sizes)
        super().__init__(sizes, dirs)


class TarTree(_ArchiveTree):
    def __init__(self, archive: Path) -> None:
        with _archive_errors(archive):
            self._tar = tarfile.open(archive)
            members = self._tar.getmembers()
        kinds = ((m.name, "dir" if m.isdir() else "file" if m.isfile() else "link", m.size, m) for m in members)
        super().__init__(archive, kinds)

    def read(self, names: Iterable[str]) -> Iterator[tuple[str, bytes]]:
        # in offset order, reading decompresses a tar once front to back (after the pass that listed it)
        for name in sorted(names, key=lambda n: self._handles[n].offset_data):
            with _member_errors(self, name):
                data = self._tar.extractfile(self._handles[name]).read()
            yield name, data

    def close(self) -> None:
        self._tar.close()


class ZipTree(_ArchiveTree):
    def __init__(self, archive: Path) -> None:
        with _archive_errors(archive):
            self._zip = zipfile.ZipFile(archive)
            infos = self._zip.infolist()
        for info in infos:
            _check_readable(archive, info)
        kinds = ((info.filename, _zip_kind(info), info.file_size, info) for info in infos)
        super().__init__(archive, kinds)

    def read(self, names: Iterable[str]) -> Iterator[tuple[str, bytes]]:
        for name in names:
            with _member_errors(self, name):
                data = self._zip.read(self._handles[name])
            yield name, data

    def close(self) -> None:
        self._zip.close()


def _zip_kind(info: zipfile.ZipInfo) -> str:
    if (info.external_attr >> 16) & 0o170000 == 0o120000:  # a Unix symlink's mode bits
        return "link"
    return "dir" if info.is_dir() else "file"


# what Python's zipfile can decompress: stored, deflate, bzip2, lzma (not Deflate64, 9, nor others)
ZIP_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate", zipfile.ZIP_BZIP2: "bzip2",
               zipfile.ZIP_LZMA: "lzma"}


def _check_readable(archive: Path, info: zipfile.ZipInfo) -> None:
    """Refuse, before reading anything, a member that is encrypted or compressed in a way zipfile cannot undo."""
    if info.flag_bits & 0x1:
        raise UserError(f"{archive}: member '{info.filename}' is password-protected; extract the archive "
                        f"yourself and {set_key('data.source', 'FOLDER')}, or zip it again without a password")
    if info.compress_type not in ZIP_METHODS:
        method = "Deflate64" if info.compress_type == 9 else f"method {info.compress_type}"
        raise UserError(f"{archive}: member '{info.filename}' is compressed with {method}, which cannot be read "
                        f"here (allowed: {', '.join(ZIP_METHODS.values())}); extract it yourself and set "
                        "data.source to the folder, or zip it again with standard deflate")


def open_tree(path: Path) -> FileTree:
    """The folder at `path`, or the archive there, read in place; an archive is recognised by its
    content, not its name (a zip saved as .tar.gz still opens)."""
    if path.is_dir():
        return FolderTree(path)
    if zipfile.is_zipfile(path):
        return ZipTree(path)
    with _archive_errors(path):
        if tarfile.is_tarfile(path):
            return TarTree(path)
    raise UserError(f"{path}: neither a zip nor a tar archive (plain or gzip/bz2/xz-compressed) by its "
                    "content; it may be damaged, or another format")


@contextmanager
def _archive_errors(archive: Path | str) -> Iterator[None]:
    """A corrupt or truncated archive raises many kinds of exception; the user gets one line naming it."""
    try:
        yield
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, lzma.LZMAError, OSError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise UserError(f"{archive}: corrupt or truncated archive ({reason})") from None


@contextmanager
def _member_errors(tree: FileTree, name: str) -> Iterator[None]:
    """Reading one member: whatever its decompressor raises on damaged data (zlib, bz2 and lzma
    errors, a CRC mismatch, a stream cut short, and kinds not seen yet) is one line naming the
    archive and the member."""
    try:
        yield
    except Exception as err:  # decompressors raise many kinds of exception on damaged data
        reason = first_line(err)
        raise UserError(f"{tree.where(name)}: damaged member, cannot be decompressed ({reason})") from None


def _checked_name(archive: Path, name: str) -> str:
    """The member's name from the archive's top ('./a/' -> 'a'); '..' and absolute paths are refused."""
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if name.startswith(("/", "\\")) or ".." in parts or (parts and ":" in parts[0]):
        raise UserError(f"{archive}: refusing member '{name}' (absolute path or '..' outside the archive)")
    return "/".join(part for part in parts if part != ".")


def _check_text(label: str, name: str) -> None:
    """One name policy for every source: names are UTF-8 text, or the download stops here, naming
    the file with its odd bytes escaped. Class names are written into tables and figures, and a
    name that is not text (a tar or a disk made with another encoding) would fail only there,
    after a whole training."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        try:  # the bytes Python could not decode and kept as escapes, shown as \xNN
            shown = name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        except UnicodeEncodeError:
            shown = name.encode("utf-8", "backslashreplace").decode()
        raise UserError(f"{label}: the name '{shown}' is not UTF-8 text; rename it (class names end up in the "
                        "result tables)") from None


def _first_visit(folder: str, seen: set[str]) -> bool:
    """False for a folder already walked, so a symlink loop is walked once."""
    real = os.path.realpath(folder)
    if real in seen:
        return False
    seen.add(real)
    return True


def _parents(name: str) -> Iterator[str]:
    parent = posixpath.dirname(name)
    while parent:
        yield parent
        parent = posixpath.dirname(parent)


# files and folders operating systems leave in image folders: never data, never a class
OS_JUNK = {"__macosx", "thumbs.db", "ehthumbs.db", "desktop.ini"}


def _visible(name: str) -> bool:
    base = posixpath.basename(name)
    return not base.startswith(".") and base.lower() not in OS_JUNK


def _check_size(tree: FileTree, name: str, size: int) -> None:
    if size > MAX_MEMBER_BYTES:
        raise UserError(f"{tree.where(name)}: refusing a member of {size:,} bytes (the limit is "
                        f"{MAX_MEMBER_BYTES // 2**20} MiB per file; a decompression bomb?)")


def _check_sizes(tree: FileTree, sizes: dict[str, int]) -> None:
    for name, size in sizes.items():
        _check_size(tree, name, size)
    total = sum(sizes.values())
    if total > MAX_TOTAL_BYTES:
        raise UserError(f"{tree.label}: refusing {total:,} bytes in all (the limit is {MAX_TOTAL_BYTES // 2**30} GiB)")
