"""Stage 7 — report: one HTML page (self-contained, opens offline) and a Markdown twin with the
assignment's checklist (metrics/rubric.json, where the recipe is a course assignment), the run
summary, params, curves, LR range test, confusion matrix, per-class table, calibration,
robustness, mistakes, GradCAM grids and the model summary; and the model card, from the same figures."""
import cifarlab.core.interrupts  # noqa: F401  first: a Ctrl-C during the imports below ends in one line
from cifarlab.config import load_params
from cifarlab.core import paths
from cifarlab.core.errors import run_stage
from cifarlab.core.io import read_output_json, together, write_json, write_text
from cifarlab.models.checkpoint import load_checkpoint
from cifarlab.report.model_card import model_card
from cifarlab.report.render import render_html, render_markdown
from cifarlab.report.sections import report_sections
from cifarlab.rubric import run_rubric


def main() -> None:
    params = load_params()
    train, evaluation = read_output_json(paths.METRICS_TRAIN), read_output_json(paths.METRICS_EVAL)
    train |= read_output_json(paths.TRAINING)
    details, gradcam = read_output_json(paths.CLASS_DETAILS), read_output_json(paths.METRICS_GRADCAM)
    robustness = read_output_json(paths.METRICS_ROBUSTNESS)
    model, ckpt = load_checkpoint(paths.MODEL, models=params.model_choices())
    rubric = run_rubric(params, model, evaluation, gradcam)
    sections = report_sections(params, train, evaluation, robustness, details, gradcam, model, rubric)
    title = f"cifarlab report: {ckpt['model']}"
    with together():
        write_text(paths.REPORT_HTML, render_html(title, sections))
        write_text(paths.REPORT_MD, render_markdown(title, sections, paths.REPORT_MD.parent))
        write_text(paths.MODEL_CARD, model_card(params, train, evaluation, robustness, details, gradcam, rubric))
        write_json(paths.RUBRIC, rubric)
    print(f"report -> {paths.REPORT_HTML} and {paths.REPORT_MD}; model card -> {paths.MODEL_CARD}")


if __name__ == "__main__":
    run_stage(main)
