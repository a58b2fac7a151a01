"""User-facing failures: one clear line, no traceback, non-zero exit."""
from __future__ import annotations

import sys
from typing import Callable


class UserError(Exception):
    """A mistake in params.yaml or in the input data that the user can fix."""


def run_stage(main: Callable[[], None]) -> None:
    """Run a stage's main(); report a UserError as one line on stderr and exit with status 2."""
    try:
        main()
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
