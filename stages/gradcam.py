"""Stage 6 — gradcam: captum LayerGradCam on the images the misclassify stage chose, at each
layer of gradcam.layers, for the predicted class ("why did it say cat") and the actual class
("where did it look for dog"); one grid per layer in plots/gradcam/<map size>px.png. Then a deletion
check of faithfulness on the first test images -> metrics/gradcam.json."""
import pandas as pd
import torch

from cifarlab import paths
from cifarlab.config import load_params
from cifarlab.data.augment import normalised
from cifarlab.data.prepared import load_prepared
from cifarlab.errors import run_stage
from cifarlab.explain.gradcam import deletion_drops, figure_names, gradcam_maps
from cifarlab.explain.mistakes import caption
from cifarlab.io import save_figure, write_json
from cifarlab.models import gradcam_layer_name
from cifarlab.models.checkpoint import checkpoint_stats, load_checkpoint
from cifarlab.report.plots import gradcam_figure


def main() -> None:
    cfg = load_params().gradcam
    model, ckpt = load_checkpoint(paths.MODEL)
    # resolves 'default'; an unknown layer fails here, before anything is written
    names = list(dict.fromkeys(gradcam_layer_name(model, name) for name in cfg.layers))
    data, stats = load_prepared(paths.PREPARED), checkpoint_stats(ckpt)
    chosen = pd.read_csv(paths.MISCLASSIFIED)
    images = [data.x_test[i] for i in chosen["index"]]
    inputs = normalised(images, stats) if images else None
    targets = [torch.tensor(chosen[column].to_numpy()) for column in ("predicted_id", "actual_id")]
    captions = [caption(row) for row in chosen.itertuples()]
    figures = {}
    for name in names:
        maps = [gradcam_maps(model, getattr(model, name), inputs, target) for target in targets] if images else [[], []]
        figures[name] = gradcam_figure(name, images, *maps, captions, chosen)

    sample = data.x_test[: cfg.deletion.images]
    drop_top, drop_random = deletion_drops(model, getattr(model, names[0]), normalised(sample, stats),
                                           cfg.deletion.percent)

    stems = figure_names(model, names, data.x_test.shape[1])
    paths.GRADCAM_DIR.mkdir(parents=True, exist_ok=True)
    for stale in paths.GRADCAM_DIR.glob("*.png"):
        if stale.stem not in stems.values():
            stale.unlink()
    for name, figure in figures.items():
        save_figure(paths.GRADCAM_DIR / f"{stems[name]}.png", figure)
    write_json(paths.METRICS_GRADCAM, {
        "layers": names, "figures": [f"{stems[name]}.png" for name in names], "explained_images": len(images),
        "deletion": {"layer": names[0], "percent": cfg.deletion.percent, "images": len(sample),
                     "confidence_drop_gradcam": round(drop_top, 6), "confidence_drop_random": round(drop_random, 6)},
    })
    print(f"GradCAM at {', '.join(names)} for {len(images)} images -> {paths.GRADCAM_DIR}/; occluding the top "
          f"{cfg.deletion.percent}% GradCAM pixels drops confidence by {drop_top:.3f} vs {drop_random:.3f} "
          f"for random pixels")


if __name__ == "__main__":
    run_stage(main)
