"""A file from the internet, checked against its published checksum before anything reads it:
the CIFAR-10 release (md5) and the benchmark's frost photographs (sha256)."""
from __future__ import annotations

import hashlib
import http.client
import socket
from pathlib import Path

from cifarlab.core.errors import UserError

STALL_SECONDS = 60  # a connection or read that hangs this long is a failed download, not a slow one


def digest(path: Path, algorithm: str) -> str:
    hasher = hashlib.new(algorithm)
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            hasher.update(block)
    return hasher.hexdigest()


def fetch(url: str, dest: Path, algorithm: str, expected: str, how_to_fix: str) -> Path:
    """`url` at `dest`, with torchvision's downloader; skipped when a copy with the right checksum
    is there already. A failed or cut-off download and a checksum mismatch remove the partial
    file and end in one line that says `how_to_fix`."""
    from torchvision.datasets.utils import download_url

    if dest.is_file() and digest(dest, algorithm) == expected:
        return dest
    partial = dest.with_name(dest.name + ".part")
    before = socket.getdefaulttimeout()
    socket.setdefaulttimeout(STALL_SECONDS)  # torchvision's urlopen has no timeout of its own
    try:
        download_url(url, dest.parent, partial.name)
    except (OSError, ValueError, RuntimeError, http.client.HTTPException) as err:  # no network, a malformed reply
        partial.unlink(missing_ok=True)
        raise UserError(f"could not download {url} ({type(err).__name__}: {err}); partial file removed. "
                        f"To work offline, {how_to_fix}") from None
    finally:
        socket.setdefaulttimeout(before)
    actual = digest(partial, algorithm)
    if actual != expected:
        partial.unlink(missing_ok=True)
        raise UserError(f"checksum mismatch for {url}: {algorithm} {actual}, expected {expected}; "
                        f"the file was removed. Retry, or {how_to_fix}")
    partial.replace(dest)
    return dest
