"""`cifarlab VERB ...`: every command the project has outside `dvc`, behind one name. Each verb
is a module here whose main(argv) it runs (conf and facts, which stages use too, live beside the
stages' code); `python -m cifarlab.VERB`, the form scripts were written in before, still runs it
(cifarlab/__init__.py).

Every verb ends the same way (core.errors.run_command): a mistake in what it was given is one
`error:` line on stderr, never a traceback, and the exit status says how it went (EXIT_STATUS)."""
from __future__ import annotations

import difflib
import importlib
import sys
import textwrap

from cifarlab.core.errors import NOTHING_RAN, run_command

# verb -> what it does, in one line; the order is `cifarlab --help`'s. Each is the module of that
# name here, but for the two the pipeline's stages use too (SHARED).
VERBS: dict[str, str] = {
    "predict": "classify your own image files with a trained model, calibrated",
    "score": "score a trained model on labelled images of your own, as evaluate scores",
    "new": "start a network of your own: nets/NAME.py and its recipe",
    "check": "whether a network meets an assignment's rubric, before training",
    "seeds": "test accuracy over seeds: mean +/- sd of the experiments that differ in seed",
    "requeue": "queue again the experiments whose queue worker was killed",
    "bench": "images/s of the data path and each model's step here; --estimate prices a run",
    "profile": "where a training step spends its time, by kind of operator",
    "conf": "compose params.yaml from conf/, as `dvc exp run -S` does",
    "facts": "each zoo model's parameters, multiply-adds and receptive field",
}
SHARED = {"conf": "cifarlab.conf", "facts": "cifarlab.facts"}


def module_of(verb: str) -> str:
    return SHARED.get(verb, f"{__name__}.{verb}")


EXIT_STATUS = ("exit status: 0 done; 1 done, but some inputs were refused (each named on stderr); "
               "2 nothing ran (one error line says why); 130 interrupted")


def usage() -> str:
    width = max(map(len, VERBS))
    lines = ["usage: cifarlab VERB [--help] ...", "", "CIFAR-10 training, explained; the pipeline itself is "
             "`dvc repro`. Verbs:"]
    lines += [f"  {verb:<{width}}  {summary}" for verb, summary in VERBS.items()]
    tail = ["", "`cifarlab VERB --help` shows a verb's arguments.", *textwrap.wrap(EXIT_STATUS, 96)]
    return "\n".join(lines + tail)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else NOTHING_RAN
    verb, rest = argv[0], argv[1:]
    if verb not in VERBS:
        close = difflib.get_close_matches(verb, VERBS, n=1)
        hint = f"did you mean `cifarlab {close[0]}`? " if close else ""
        print(f"error: cifarlab has no verb {verb!r}; {hint}the verbs: {', '.join(VERBS)}", file=sys.stderr)
        return NOTHING_RAN
    module = importlib.import_module(module_of(verb))
    return run_command(module.main, rest)


if __name__ == "__main__":
    sys.exit(main())
