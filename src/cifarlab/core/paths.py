"""Where each stage reads and writes, relative to the project root (mirrors dvc.yaml)."""
from pathlib import Path

EXPERIMENT_WORKSPACE = (".dvc", "tmp", "exps")  # where `dvc exp run --temp/--queue` runs a copy of the project


def project_root(cwd: Path | None = None) -> Path:
    """The project the user works in: the working directory, or, inside the copy that
    `dvc exp run --temp/--queue` makes under .dvc/tmp/exps/, the project that holds it."""
    cwd = (cwd or Path.cwd()).resolve()
    parts, width = cwd.parts, len(EXPERIMENT_WORKSPACE)
    for start in range(len(parts) - width + 1):
        if parts[start:start + width] == EXPERIMENT_WORKSPACE:
            return Path(*parts[:start])
    return cwd


def user_path(text: str) -> Path:
    """A path from params.yaml: ~ expanded, and a relative one taken from the project root, so
    `data.source: ../shared/...` means the same in the workspace and in an experiment's copy."""
    path = Path(text).expanduser()
    return path if path.is_absolute() else project_root() / path


RAW_DIR = Path("data/raw")
PREPARED = Path("data/prepared.npz")
STATS = Path("data/stats.json")
CHOICE = Path("plan/choice.json")  # what the plan stage chose for this machine: the values train reads
PLAN_ESTIMATE = Path("plan/estimate.json")  # what it expects the run to cost here, against the budget
MODEL = Path("models/model.pt")
ONNX = Path("models/model.onnx")  # the model out of PyTorch, normalisation inside
ONNX_CARD = Path("models/model.onnx.json")  # its input, output, classes and opset, for a reader
RELEASE = Path("models/cifar10-model.pt")  # the checkpoint with its temperature inside: the registry's model
TRAINING = Path("models/training.json")  # how it was trained, in words: device, precision, chosen epoch
CALIBRATION = Path("models/calibration.json")  # the temperature that calibrates its plain probabilities
PREDICTIONS = Path("eval/predictions.csv")
CLASS_DETAILS = Path("eval/classes.json")  # per-class accuracy and precision, most-confused pairs
MISCLASSIFIED = Path("eval/misclassified.csv")
METRICS_TRAIN = Path("metrics/train.json")
METRICS_EVAL = Path("metrics/evaluate.json")
LIVE = Path("dvclive")  # per-epoch metrics (metrics.json, the latest) and curves (plots/metrics/*.tsv)
# Figures go in one folder per stage, numbered as the stages run, so `dvc plots show/diff` (which
# sorts images by folder) shows them in pipeline order, and a figure a run did not make is absent.
TRAIN_FIGURES = Path("plots/3-train")
CURVES_PNG = TRAIN_FIGURES / "curves.png"
LR_FINDER_PNG = TRAIN_FIGURES / "lr_finder.png"  # only when the LR range test ran
CONFUSION_PNG = Path("plots/4-evaluate/confusion.png")
RELIABILITY_PNG = Path("plots/4-evaluate/reliability.png")
ROBUSTNESS_FIGURES = Path("plots/4-robustness")
ROBUSTNESS_PNG = ROBUSTNESS_FIGURES / "corruption_accuracy.png"
CORRUPTIONS_PNG = ROBUSTNESS_FIGURES / "corruption_examples.png"
GALLERY_PNG = Path("plots/5-misclassify/misclassified.png")
GRADCAM_DIR = Path("plots/6-gradcam")  # one gradcam-<n>.png per explained layer (n: its place in gradcam.layers), then:
FAITHFULNESS_PNG = GRADCAM_DIR / "road_faithfulness.png"
# tables behind the interactive plots and the figures
STEP_LRS = Path("plots/lr_steps.csv")
LR_FINDER_CSV = Path("plots/lr_finder.csv")  # the range test's curve; no rows when it did not run
CONFUSION_CSV = Path("plots/confusion.csv")
RELIABILITY = Path("plots/reliability")  # the reliability diagram's points: <kind of prediction>.csv
METRICS_GRADCAM = Path("metrics/gradcam.json")
METRICS_ROBUSTNESS = Path("metrics/robustness.json")  # accuracy under the CIFAR-10-C corruptions
ROBUSTNESS_CSV = Path("plots/robustness.csv")  # corruption, severity, accuracy
FAITHFULNESS_CSV = Path("eval/faithfulness.csv")  # ROAD curves: layer, order, fraction, probability
REPORT_HTML = Path("reports/report.html")
REPORT_MD = Path("reports/report.md")
RUBRIC = Path("metrics/rubric.json")  # the run against its assignment's checklist (cifarlab.rubric)
MODEL_CARD = Path("reports/model_card.md")  # the model's uses, data, evaluation and limits, with a model-index header
RESUME_STATE = Path(".cache/train_state.pt")  # outside DVC's outs, so it survives a rerun
# which stage writes each file that a later stage reads: the rerun a damaged file needs
WRITTEN_BY = {PREPARED: "download", STATS: "stats", CHOICE: "plan", MODEL: "train", METRICS_TRAIN: "train",
              TRAINING: "train", PREDICTIONS: "evaluate", METRICS_EVAL: "evaluate", CALIBRATION: "evaluate",
              CLASS_DETAILS: "evaluate", MISCLASSIFIED: "misclassify", METRICS_GRADCAM: "gradcam",
              METRICS_ROBUSTNESS: "robustness"}
