"""Stage 6 — gradcam: captum LayerGradCam on the images the misclassify stage chose, at each
layer of gradcam.layers, for the predicted class ("why did it say cat") and the actual class
("where did it look for dog"); one grid per layer in plots/gradcam/<map size>px.png. Then ROAD
faithfulness of every layer on a class-balanced sample of test images: metrics/gradcam.json, the curves in
eval/faithfulness.csv and plots/faithfulness.png."""
import torch

from cifarlab import paths
from cifarlab.config import load_params
from cifarlab.data.augment import normalised
from cifarlab.data.prepared import load_prepared
from cifarlab.errors import run_stage
from cifarlab.explain.faithfulness import balanced_indices, curves_table, road_curves
from cifarlab.explain.gradcam import figure_names, gradcam_maps
from cifarlab.explain.mistakes import PREDICTION_COLUMNS, caption
from cifarlab.io import read_table, save_figure, write_csv, write_json
from cifarlab.models.checkpoint import checkpoint_stats, load_checkpoint
from cifarlab.models.registry import gradcam_layer_name
from cifarlab.report.plots import faithfulness_figure, gradcam_figure


def main() -> None:
    params = load_params()
    cfg, data = params.gradcam, load_prepared(paths.PREPARED)
    model, ckpt = load_checkpoint(paths.MODEL, model_name=params.model, classes=data.classes)
    # resolves 'default'; an unknown layer fails here, before anything is written
    names = list(dict.fromkeys(gradcam_layer_name(model, name) for name in cfg.layers))
    stats = checkpoint_stats(ckpt)
    chosen = read_table(paths.MISCLASSIFIED, PREDICTION_COLUMNS)
    images = [data.x_test[i] for i in chosen["index"]]
    inputs = normalised(images, stats) if images else None
    targets = [torch.tensor(chosen[column].to_numpy()) for column in ("predicted_id", "actual_id")]
    captions = [caption(row) for row in chosen.itertuples()]
    figures, curves = {}, {}
    sample = normalised(data.x_test[balanced_indices(data.y_test, cfg.faithfulness.images)], stats)
    with torch.no_grad():
        sample_predicted = model(sample).argmax(1)
    for name in names:
        layer = getattr(model, name)
        maps = [gradcam_maps(model, layer, inputs, target, scaled=False) for target in targets] if images else [[], []]
        figures[name] = gradcam_figure(name, images, *maps, captions, chosen)
        relevance = gradcam_maps(model, layer, sample, sample_predicted)
        curves[name] = road_curves(model, sample, relevance, cfg.faithfulness.fractions)
    ranked = sorted(names, key=lambda name: -curves[name].gap)

    stems = figure_names(model, names, data.x_test.shape[1])
    paths.GRADCAM_DIR.mkdir(parents=True, exist_ok=True)
    for stale in paths.GRADCAM_DIR.glob("*.png"):
        if stale.stem not in stems.values():
            stale.unlink()
    for name, figure in figures.items():
        save_figure(paths.GRADCAM_DIR / f"{stems[name]}.png", figure)
    write_csv(paths.FAITHFULNESS_CSV, curves_table(curves))
    save_figure(paths.FAITHFULNESS_PNG, faithfulness_figure(curves, ranked))
    write_json(paths.METRICS_GRADCAM, {
        "layers": names, "figures": [f"{stems[name]}.png" for name in names], "explained_images": len(images),
        "faithfulness_images": len(sample), "most_faithful_layer": ranked[0],
        "road_gap": {name: round(curves[name].gap, 6) for name in names},
    })
    print(f"GradCAM at {', '.join(names)} for {len(images)} images -> {paths.GRADCAM_DIR}/; ROAD gap (LeRF - MoRF "
          f"probability) " + ", ".join(f"{name} {curves[name].gap:.3f}" for name in ranked))


if __name__ == "__main__":
    run_stage(main)
