"""Stage 4c — robustness: the checkpoint on a sample of the test split under the 15 CIFAR-10-C
corruptions at 5 severities: accuracy per cell, the mean, the drop from clean, the worst."""
import cifarlab.core.interrupts  # noqa: F401  first: a Ctrl-C during the imports below ends in one line
from cifarlab.config import load_params
from cifarlab.core import paths
from cifarlab.core.errors import run_stage
from cifarlab.core.io import save_figure, together, write_csv, write_json
from cifarlab.feed.batches import eval_batches
from cifarlab.feed.device import select_device, usable_precision
from cifarlab.feed.inference import predict
from cifarlab.models.checkpoint import checkpoint_stats, load_checkpoint
from cifarlab.prepared import load_prepared
from cifarlab.robustness import figures, frost, grid


def main() -> None:
    params, data, device = load_params(), load_prepared(paths.PREPARED), select_device()
    cfg, (model, ckpt) = params.robustness, load_checkpoint(paths.MODEL, device, params.model_choices(), data.classes)
    stats, precision = checkpoint_stats(ckpt), usable_precision(ckpt["precision"], device)
    frost_from = frost.frost_source(cfg.frost, data.x_test.shape[1])  # the benchmark's photographs, or drawn
    chosen = grid.class_sample(data.y_test, cfg.images_per_class, cfg.seed)
    images, labels = data.x_test[chosen], data.y_test[chosen]

    def correct(batch):
        logits, truth = predict(model, eval_batches(batch, labels, stats, params.evaluate.batch_size, device, "device"),
                                device, precision)
        return (logits.argmax(dim=1) == truth).numpy()

    cells = grid.correctness_grid(images, cfg.seed, correct, frost_from.photos)
    table, metrics = grid.grid_table(cells), grid.summary(cells, frost_from)
    with together():
        write_csv(paths.ROBUSTNESS_CSV, table)
        save_figure(paths.ROBUSTNESS_PNG, figures.heatmap_figure(table, metrics))
        save_figure(paths.CORRUPTIONS_PNG, figures.examples_figure(images[0], cfg.seed, frost_from))
        write_json(paths.METRICS_ROBUSTNESS, metrics)
    print(grid.summary_line(metrics, paths.METRICS_ROBUSTNESS, frost_from))


if __name__ == "__main__":
    run_stage(main)
