"""User-facing failures: one clear line, no traceback, non-zero exit; and interruptions that
unwind cleanly, so no temp file or half-written output is left behind."""
from __future__ import annotations

import signal
import sys
from collections.abc import Callable

INTERRUPTED = 130


class UserError(Exception):
    """A mistake in params.yaml or in the input data that the user can fix."""


def _interrupt(signum, _frame) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def run_stage(main: Callable[[], None]) -> None:
    """Run a stage's main(), its outputs replaced together at the end or not at all. A UserError
    is one line on stderr and exit status 2; SIGINT or SIGTERM unwinds through the atomic
    writers' cleanup and exits with status 130."""
    from cifarlab.io import together

    signal.signal(signal.SIGTERM, _interrupt)
    try:
        with together():
            main()
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted: every output written so far is complete; run `dvc repro` again "
              "(training resumes after its last finished epoch)", file=sys.stderr)
        sys.exit(INTERRUPTED)
