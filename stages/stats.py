"""Stage 2 — stats: per-channel mean/std of the training images -> data/stats.json."""
from cifarlab import paths
from cifarlab.data.prepared import load_prepared
from cifarlab.errors import run_stage
from cifarlab.io import write_json
from cifarlab.params import load_params
from cifarlab.stats import channel_stats


def main() -> None:
    load_params()
    data = load_prepared(paths.PREPARED)
    mean, std = channel_stats(data.x_train)
    write_json(paths.STATS, {"mean": mean, "std": std, "num_train_images": int(len(data.x_train))})
    print(f"train mean {[round(m, 4) for m in mean]} std {[round(s, 4) for s in std]} -> {paths.STATS}")


if __name__ == "__main__":
    run_stage(main)
