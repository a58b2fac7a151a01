"""Stage 2b — plan: what train trains on this machine. Where params.yaml says auto (model,
train.epochs, train.low_res.epochs, train.precision), the most accurate plan.ladder entry that
fits plan.budget_minutes at this machine's measured speed, in its faster precision; what it names,
as named. The choice goes to plan/choice.json, which train depends on, so another machine's choice
is another result and DVC shows it. It runs on every `dvc repro` (a new machine must be seen), in
seconds once this machine's speeds are cached."""
import cifarlab.core.interrupts  # noqa: F401  first: a Ctrl-C during the imports below ends in one line
from cifarlab.config import load_params
from cifarlab.core.errors import run_stage
from cifarlab.feed.device import select_device
from cifarlab.plan.run import plan


def main() -> None:
    print(plan(load_params(), select_device()), flush=True)


if __name__ == "__main__":
    run_stage(main)
