"""Stage 6 — gradcam: captum LayerGradCam on the images the misclassified stage chose, at each
layer of gradcam.layers, for the predicted class ("why did it say cat") and the actual class
("where did it look for dog"); one grid per layer in plots/6-gradcam/. Then ROAD faithfulness of
every layer on a class-balanced sample of test images: metrics/gradcam.json, the curves in
eval/faithfulness.csv and plots/6-gradcam/road_faithfulness.png."""
import cifarlab.core.interrupts  # noqa: F401  first: a Ctrl-C during the imports below ends in one line
from cifarlab.config import load_params
from cifarlab.core import paths
from cifarlab.core.errors import run_stage
from cifarlab.gradcam.outputs import explain_layers
from cifarlab.models.checkpoint import checkpoint_stats, load_checkpoint
from cifarlab.models.registry import explained_layers
from cifarlab.prepared import load_prepared


def main() -> None:
    params = load_params()
    cfg, data = params.gradcam, load_prepared(paths.PREPARED)
    model, ckpt = load_checkpoint(paths.MODEL, models=params.model_choices(), classes=data.classes)
    layers = explained_layers(cfg.layers, model, data.x_test.shape[1])
    explain_layers(cfg, model, layers, data, checkpoint_stats(ckpt))


if __name__ == "__main__":
    run_stage(main)
