"""Stage 2 — stats: per-channel mean/std of the training images -> data/stats.json."""
import cifarlab.core.interrupts  # noqa: F401  first: a Ctrl-C during the imports below ends in one line
from cifarlab.config import load_params
from cifarlab.core import paths
from cifarlab.core.errors import run_stage
from cifarlab.prepared import load_prepared
from cifarlab.stats import channel_stats, save_stats


def main() -> None:
    load_params()
    data = load_prepared(paths.PREPARED)
    stats = channel_stats(data.x_train)
    save_stats(paths.STATS, stats, len(data.x_train))
    print(f"train mean {[round(m, 4) for m in stats.mean]} std {[round(s, 4) for s in stats.std]} -> {paths.STATS}")


if __name__ == "__main__":
    run_stage(main)
