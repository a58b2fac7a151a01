"""User-facing failures: one clear line, no traceback, non-zero exit; and interruptions that
unwind cleanly, so no temp file or half-written output is left behind."""
from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from typing import NoReturn

INTERRUPTED = 130
INTERRUPTED_LINE = ("interrupted: every output written so far is complete; run `dvc repro` again "
                    "(training resumes after its last finished epoch)")


class UserError(Exception):
    """A mistake in params.yaml or in the input data that the user can fix."""


def first_line(err: Exception, limit: int = 160) -> str:
    """An exception as a few words for a one-line message: its message's first line, or its type's
    name where it has none."""
    text = str(err).strip()
    return text.splitlines()[0][:limit] if text else type(err).__name__


LR_TOO_HIGH = "the learning rate is probably too high (lower train.optimizer.lr or the scheduler's max_lr)"


def set_key(key: str, value: str) -> str:
    """How to set a params key so that it sticks, for every message that asks for one: each
    `dvc exp run` recomposes params.yaml from conf/, so an edit of params.yaml alone is lost."""
    return f"set {key} with `dvc exp run -S {key}={value}` (or in conf/config.yaml, for good)"


NOTHING_RAN = 2  # a command's exit status when it refused its input before doing anything


def refuse(message: str) -> NoReturn:
    """End a command that did nothing: one `error:` line on stderr, exit status 2."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(NOTHING_RAN)


def run_command(main: Callable[[list[str] | None], int | None], argv: list[str] | None = None) -> int:
    """A command's main(argv) (`cifarlab VERB`, or `python -m cifarlab.VERB`), its failures one line
    each: a UserError, or a file it was given that is missing, a folder or unreadable, exit 2; an
    interruption, 130. Otherwise main's own status (1: some inputs refused)."""
    try:
        return main(argv) or 0
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
    except OSError as err:
        where = f"{err.filename}: " if err.filename else ""
        print(f"error: {where}{err.strerror or first_line(err)}", file=sys.stderr)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return INTERRUPTED
    return NOTHING_RAN


def earlier_outputs(by_hand: str) -> str:
    """What a failure leaves of the stage's earlier outputs: `dvc repro` deletes a stage's outputs
    before it runs the stage (it sets DVC_STAGE in the stage's environment), so only a stage run
    by hand (`python stages/<stage>.py`) still has them; `by_hand` says what became of them then."""
    if os.environ.get("DVC_STAGE"):
        return "dvc repro had removed this stage's earlier outputs before running it; rerun it once this is fixed"
    return by_hand


def _interrupt(signum, _frame) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def run_stage(main: Callable[[], None]) -> None:
    """Run a stage's main(), its outputs replaced together at the end or not at all. A UserError
    is one line on stderr and exit status 2, an OSError (a file the stage could not read or
    write) one line naming the file and exit status 1; SIGINT or SIGTERM unwinds through the atomic
    writers' cleanup and exits with status 130."""
    from cifarlab.core.io import together

    signal.signal(signal.SIGINT, signal.default_int_handler)  # core/interrupts.py's quick exit no longer
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        with together():
            main()
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except OSError as err:  # a file the stage's own code or a library opened (dvclive's log, say)
        print(f"error: {err.filename or 'a file'}: {err.strerror or err}; "
              f"{earlier_outputs('the outputs it writes at the end were not replaced')}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print(INTERRUPTED_LINE, file=sys.stderr)
        sys.exit(INTERRUPTED)
