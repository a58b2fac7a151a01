"""Where each stage reads and writes, relative to the project root (mirrors dvc.yaml)."""
from pathlib import Path

RAW_DIR = Path("data/raw")
PREPARED = Path("data/prepared.npz")
STATS = Path("data/stats.json")
MODEL = Path("models/model.pt")
PREDICTIONS = Path("eval/predictions.csv")
MISCLASSIFIED = Path("eval/misclassified.csv")
METRICS_TRAIN = Path("metrics/train.json")
METRICS_EVAL = Path("metrics/evaluate.json")
HISTORY = Path("plots/history.csv")
CURVES_PNG = Path("plots/curves.png")
CONFUSION_CSV = Path("plots/confusion.csv")
CONFUSION_PNG = Path("plots/confusion.png")
GALLERY_PNG = Path("plots/misclassified.png")
GRADCAM_DIR = Path("plots/gradcam")  # one <layer>.png per explained layer
METRICS_GRADCAM = Path("metrics/gradcam.json")
REPORT_HTML = Path("reports/report.html")
REPORT_MD = Path("reports/report.md")
LR_FINDER_CSV = Path("plots/lr_finder.csv")
LR_FINDER_PNG = Path("plots/lr_finder.png")
RESUME_STATE = Path(".cache/train_state.pt")  # outside DVC's outs, so it survives a rerun
