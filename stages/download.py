"""Stage 1 — download: get data.source into data/prepared.npz (uint8 NHWC + labels + classes)."""
import cifarlab.core.interrupts  # noqa: F401  first: a Ctrl-C during the imports below ends in one line
from cifarlab.config import load_params
from cifarlab.core import paths
from cifarlab.core.errors import run_stage
from cifarlab.download.sources import prepare
from cifarlab.prepared import save_prepared


def main() -> None:
    cfg = load_params().data
    data = prepare(cfg.source, cfg.image_size, cfg.subset.model_dump(), cfg.seed, paths.RAW_DIR, cfg.val)
    save_prepared(paths.PREPARED, data)
    print(f"prepared {len(data.y_train)} train / {len(data.y_val)} validation / {len(data.y_test)} test images of "
          f"{data.x_train.shape[1]}x{data.x_train.shape[2]}, {data.num_classes} classes "
          f"({', '.join(data.classes)}) -> {paths.PREPARED}")


if __name__ == "__main__":
    run_stage(main)
