"""Stage 4 — evaluate: score the checkpoint on the test split only: metrics JSON, per-image
predictions for later stages, and the confusion matrix as DVC-template CSV and heatmap PNG."""
from cifarlab import paths
from cifarlab.augment import eval_transform
from cifarlab.checkpoint import load_checkpoint
from cifarlab.data.prepared import load_prepared
from cifarlab.dataset import make_loader
from cifarlab.device import select_device
from cifarlab.errors import run_stage
from cifarlab.evaluation import confusion_matrix, predictions_table, summary_metrics
from cifarlab.io import save_figure, write_csv, write_json
from cifarlab.params import load_params
from cifarlab.plots import confusion_figure
from cifarlab.training import predict


def main() -> None:
    params = load_params()
    device = select_device()
    model, ckpt = load_checkpoint(paths.MODEL, device)
    data = load_prepared(paths.PREPARED)
    loader = make_loader(data.x_test, data.y_test, eval_transform(ckpt["mean"], ckpt["std"]),
                         params["evaluate"]["batch_size"])
    logits, labels = predict(model, loader, device)
    table = predictions_table(logits, labels, data.classes)
    metrics = summary_metrics(logits, labels, data.classes)
    matrix = confusion_matrix(table["actual_id"].to_numpy(), table["predicted_id"].to_numpy(),
                              data.num_classes)
    write_csv(paths.PREDICTIONS, table)
    write_csv(paths.CONFUSION_CSV, table[["actual", "predicted"]])
    save_figure(paths.CONFUSION_PNG, confusion_figure(matrix, data.classes))
    write_json(paths.METRICS_EVAL, metrics)
    print(f"scored {metrics['num_test_images']} test images: accuracy {metrics['accuracy']:.2f}%, "
          f"loss {metrics['loss']:.4f} -> {paths.METRICS_EVAL}")


if __name__ == "__main__":
    run_stage(main)
