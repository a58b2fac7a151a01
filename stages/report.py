"""Stage 7 — report: one HTML page (self-contained) and a Markdown twin with the run summary,
params, curves, confusion matrix, per-class accuracy, mistakes, GradCAM and model summary."""
import yaml

from cifarlab import paths
from cifarlab.checkpoint import load_checkpoint
from cifarlab.errors import run_stage
from cifarlab.io import read_json, write_text
from cifarlab.params import load_params
from cifarlab.report import Section, model_summary, render_html, render_markdown


def main() -> None:
    params = load_params()
    train, evaluation = read_json(paths.METRICS_TRAIN), read_json(paths.METRICS_EVAL)
    model, ckpt = load_checkpoint(paths.MODEL)
    summary = [
        ("model", train["model"]), ("parameters", f"{train['params']:,}"),
        ("multiply-adds per image", f"{train['macs']:,}"),
        ("receptive field", f"{train['receptive_field']} px"),
        ("epochs", train["epochs"]), ("device", train["device"]),
        ("best test accuracy (training)", f"{train['best_test_acc']:.2f}% at epoch {train['best_epoch']}"),
        ("test accuracy of the checkpoint", f"{evaluation['accuracy']:.2f}% on "
                                            f"{evaluation['num_test_images']} test images"),
        ("test loss", f"{evaluation['loss']:.4f}"), ("training time", f"{train['train_seconds']} s"),
    ]
    sections = [
        Section("Run summary", "table", summary),
        Section("Loss, accuracy and learning rate", "image", paths.CURVES_PNG),
        Section("Confusion matrix", "image", paths.CONFUSION_PNG),
        Section("Per-class test accuracy (%)", "table", list(evaluation["per_class_accuracy"].items())),
        Section("Misclassified test images", "image", paths.GALLERY_PNG),
        Section("GradCAM on the same images", "image", paths.GRADCAM_PNG),
        Section("Params", "pre", yaml.safe_dump(params, sort_keys=False)),
        Section("Model summary (torchsummary)", "pre", model_summary(model, params["data"]["image_size"])),
    ]
    title = f"cifarlab report: {ckpt['model']}"
    write_text(paths.REPORT_HTML, render_html(title, sections))
    write_text(paths.REPORT_MD, render_markdown(title, sections, paths.REPORT_MD.parent))
    print(f"report -> {paths.REPORT_HTML} and {paths.REPORT_MD}")


if __name__ == "__main__":
    run_stage(main)
