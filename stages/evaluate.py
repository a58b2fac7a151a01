"""Stage 4 — evaluate: score the checkpoint on the test split only: metrics JSON (with and
without flip TTA when asked), per-image predictions for later stages, and the confusion matrix
as DVC-template CSV and as a heatmap with counts."""
from cifarlab import paths
from cifarlab.augment import eval_transform
from cifarlab.checkpoint import load_checkpoint
from cifarlab.data.prepared import load_prepared
from cifarlab.dataset import make_loader
from cifarlab.device import select_device
from cifarlab.errors import run_stage
from cifarlab.evaluation import confusion_matrix, flip_tta, predictions_table, summary_metrics
from cifarlab.io import save_figure, write_csv, write_json
from cifarlab.params import load_params
from cifarlab.plots import confusion_figure
from cifarlab.training import predict


def main() -> None:
    cfg = load_params()["evaluate"]
    device = select_device()
    model, ckpt = load_checkpoint(paths.MODEL, device)
    data = load_prepared(paths.PREPARED)
    loader = make_loader(data.x_test, data.y_test, eval_transform(ckpt["mean"], ckpt["std"]), cfg["batch_size"])
    logits, labels = predict(model, loader, device)
    plain_accuracy = 100.0 * (logits.argmax(1) == labels).float().mean().item()
    if cfg["flip_tta"]:
        logits = flip_tta(model, loader, device, logits)
    table = predictions_table(logits, labels, data.classes)
    matrix = confusion_matrix(table["actual_id"].to_numpy(), table["predicted_id"].to_numpy(), data.num_classes)
    metrics = summary_metrics(logits, labels, matrix, data.classes)
    metrics.update(flip_tta=cfg["flip_tta"], accuracy_without_tta=round(plain_accuracy, 4))
    write_csv(paths.PREDICTIONS, table)
    write_csv(paths.CONFUSION_CSV, table[["actual", "predicted"]])
    save_figure(paths.CONFUSION_PNG, confusion_figure(matrix, data.classes))
    write_json(paths.METRICS_EVAL, metrics)
    tta = f" (flip TTA; {plain_accuracy:.2f}% without)" if cfg["flip_tta"] else ""
    print(f"scored {metrics['num_test_images']} images of the test split: accuracy "
          f"{metrics['accuracy']:.2f}%{tta}, loss {metrics['loss']:.4f} -> {paths.METRICS_EVAL}")


if __name__ == "__main__":
    run_stage(main)
