"""Stage 3 — train: fit the model of plan/choice.json (the plan stage's, for this machine) on the
training split, keep the checkpoint train.checkpoint names (the test split decides nothing), the
per-epoch log, the LR range test and metrics. An interrupted run resumes from its last epoch.
With train.processes > 1 it starts that many copies of itself as data-parallel processes (see
cifarlab.train.distributed)."""
import sys

import cifarlab.core.interrupts  # noqa: F401  first: a Ctrl-C during the imports below ends in one line
from cifarlab.config import load_choice, load_params
from cifarlab.core import paths
from cifarlab.core.errors import run_stage
from cifarlab.feed.device import select_device
from cifarlab.prepared import load_prepared
from cifarlab.stats import load_stats
from cifarlab.train import distributed
from cifarlab.train.outputs import EpochOutputs, write_results
from cifarlab.train.run import run


def main() -> None:
    params = load_params()
    group = distributed.from_env()
    device = select_device(group.local_rank)
    if params.train.processes > 1 and not distributed.launched():
        distributed.check_devices(params.train.processes, device, params.train.sync_bn)
        distributed.launch(params.train.processes, sys.executable, *sys.argv)
        return
    params, model_rule = load_choice(params, paths.CHOICE)
    data, stats = load_prepared(paths.PREPARED), load_stats(paths.STATS)
    with distributed.joined(group, device):
        result = run(params, data, stats, paths.RESUME_STATE, on_epoch_end=EpochOutputs(), device=device,
                     group=group)
    if group.is_main:
        facts = write_results(params, result, data, stats, model_rule)
        print(f"kept epoch {result.kept_epoch} ({facts['checkpoint']['chosen_by']}) -> {paths.MODEL}")


if __name__ == "__main__":
    run_stage(main)
