"""Imported first by every stage script, for its side effect: from here on, Ctrl-C (or SIGTERM)
during the slow imports that follow (torch, pandas, matplotlib: seconds on a laptop) ends the stage
as it would end later, inside run_stage: one line and exit status 130, never a traceback. Nothing
has been written yet at that point, so there is nothing to clean up; run_stage puts the usual
handlers back before the stage's work starts."""
import os
import signal
import sys

from cifarlab.core.errors import INTERRUPTED, INTERRUPTED_LINE


def _stop_now(_signum, _frame) -> None:
    print(INTERRUPTED_LINE, file=sys.stderr, flush=True)
    os._exit(INTERRUPTED)


signal.signal(signal.SIGINT, _stop_now)
signal.signal(signal.SIGTERM, _stop_now)
