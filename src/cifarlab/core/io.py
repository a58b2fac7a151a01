"""Atomic writers: every output is written to a temp file beside it and renamed into place,
so an interrupted stage never leaves a half-written file for DVC to cache."""
from __future__ import annotations

import glob
import json
import math
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, Any, TypeVar

import numpy as np

from cifarlab.core.errors import UserError, earlier_outputs
from cifarlab.core.paths import WRITTEN_BY

T = TypeVar("T")


# inside together(): finished temp files waiting to replace their outputs (None: a file to remove),
# by output path
_pending: dict[Path, Path | None] | None = None


@contextmanager
def together() -> Iterator[None]:
    """Outputs written inside replace their files all at once when the block ends, or, if it
    fails, none do: a stage never leaves new predictions beside stale metrics."""
    global _pending
    outer, _pending = _pending, {}
    try:
        yield  # an error in the stage itself passes through as what it is
        for path, tmp in _pending.items():
            try:
                if tmp is None:
                    path.unlink(missing_ok=True)
                else:
                    os.replace(tmp, path)
            except OSError as err:
                raise UserError(f"{path}: could not put it in place ({err.strerror or err}); "
                                f"{earlier_outputs('the outputs before it in this run are new, the rest as before')}"
                                ) from None
    finally:
        for tmp in _pending.values():
            if tmp is not None:
                tmp.unlink(missing_ok=True)
        _pending = outer


@contextmanager
def immediately() -> Iterator[None]:
    """Writes inside replace their files at once, even within together(): for files that must
    survive a failed stage, such as the resume state and the history of a running training."""
    global _pending
    outer, _pending = _pending, None
    try:
        yield
    finally:
        _pending = outer


def remove(path: Path) -> None:
    """Delete an output that this run no longer makes (a figure of a step that did not run), with
    the other outputs: inside together(), when the block succeeds."""
    if _pending is None:
        path.unlink(missing_ok=True)
    else:
        _pending[path] = None


@contextmanager
def atomic_open(path: str | Path, mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temp file next to `path`; on success rename it over `path` (inside together(): when
    the block ends), on failure delete it. A failed write (a full disk, say) is one UserError
    naming the path, and no temp file is left."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    deferred = False
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_orphaned_temps(path)
        with open(tmp, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        if _pending is None:
            os.replace(tmp, path)
        else:
            _pending[path], deferred = tmp, True
    except OSError as err:
        raise UserError(f"{path}: could not write it ({err.strerror or err}); "
                        f"{earlier_outputs('its previous version, if any, is kept')}") from None
    finally:
        if not deferred:
            with suppress(OSError):  # never made (its folder could not be): nothing to clean up
                tmp.unlink(missing_ok=True)


def remove_orphaned_temps(path: Path) -> None:
    """Delete temp files of `path` left by writers that were killed outright (kill -9, power
    loss): their process is gone, so nothing will rename or remove them."""
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        pid = tmp.name[len(path.name) + 2:-len(".tmp")]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            tmp.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def read_checked(path: str | Path, read: Callable[[Path], T]) -> T:
    """Read a file an earlier stage wrote; missing, truncated or garbled, it is one line naming
    the stage whose rerun rewrites it, never a traceback."""
    path = Path(path)
    try:
        return read(path)
    except UserError:
        raise
    except Exception:  # whatever the parser makes of damaged bytes
        raise UserError(f"{path} is damaged or incomplete; rerun `dvc repro {WRITTEN_BY[path]}`") from None


def check_output(flag: str, path: Path, kind: str = "file") -> None:
    """A command's output path (`flag` names it: --csv, --out, ...), checked before any work: it
    can be made as a `kind` ("file" or "folder"), so that a run never ends, its work done, by
    failing to write what it computed. One rule for every command."""
    if kind == "file" and path.is_dir():
        raise UserError(f"{flag} {path}: is a folder; name a file")
    if kind == "folder" and path.exists() and not path.is_dir():
        raise UserError(f"{flag} {path}: is a file; name a folder (made if missing)")
    for parent in path.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise UserError(f"{flag} {path}: {parent} is a file, so nothing can be written under it; name "
                                f"another {kind}")
            return


def write_json(path: str | Path, obj: Any) -> None:
    """JSON as the standard has it: a NaN or an infinity (which Python's json writes, and DVC and
    other readers refuse) is one line naming its key, before anything is written."""
    bad = _not_a_number(obj)
    if bad is not None:
        raise UserError(f"{path}: {bad[0] or 'the value'} = {bad[1]}, not a number; nothing was written")
    with atomic_open(path, "w") as handle:
        json.dump(obj, handle, indent=2, allow_nan=False)
        handle.write("\n")


def _not_a_number(obj: Any, key: str = "") -> tuple[str, float] | None:
    """The dotted key and value of the first NaN or infinity in `obj`, else None."""
    if isinstance(obj, float):
        return None if math.isfinite(obj) else (key, obj)
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, (list, tuple)) else ()
    for name, value in items:
        found = _not_a_number(value, f"{key}.{name}" if key else str(name))
        if found is not None:
            return found
    return None


def read_json(path: str | Path) -> Any:
    with open(path) as handle:
        return json.load(handle)


def read_output_json(path: str | Path) -> Any:
    """A JSON file an earlier stage wrote, through read_checked."""
    return read_checked(path, read_json)


TEXT_COLUMNS = ("actual", "predicted")  # class names: read as written, never as numbers or missing values


def read_table(path: str | Path, columns: list[str], rows: int | None = None):
    """A CSV an earlier stage wrote, with `columns` all filled in (and `rows` rows when given): a
    file cut short mid-line or with rows missing is damaged, not silently shorter. Class names
    come back exactly as written ('None', 'NA' and '01' stay strings); the other columns must be
    numbers."""
    import pandas as pd

    def read(path: Path):
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        cells = frame[columns]
        if (cells.isna() | (cells == "")).to_numpy().any() or (rows is not None and len(frame) != rows):
            raise ValueError("incomplete table")
        for column in frame.columns.difference(TEXT_COLUMNS):
            frame[column] = pd.to_numeric(frame[column])
        return frame
    return read_checked(path, read)


def write_csv(path: str | Path, frame) -> None:
    """Write a pandas DataFrame as CSV without the index column."""
    with atomic_open(path, "w") as handle:
        frame.to_csv(handle, index=False, lineterminator="\n")


def write_text(path: str | Path, text: str) -> None:
    with atomic_open(path, "w") as handle:
        handle.write(text)


def save_figure(path: str | Path, fig) -> None:
    """Save a matplotlib figure as PNG and close it."""
    import matplotlib.pyplot as plt

    with atomic_open(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)


def save_arrays(path: str | Path, **arrays: np.ndarray) -> None:
    with atomic_open(path, "wb") as handle:
        np.savez(handle, **arrays)


def save_torch(path: str | Path, obj: Any) -> None:
    import torch

    with atomic_open(path, "wb") as handle:
        try:
            torch.save(obj, handle)
        except RuntimeError as err:  # torch reports a failed write (a full disk) as a RuntimeError
            raise OSError(str(err).splitlines()[0]) from None
