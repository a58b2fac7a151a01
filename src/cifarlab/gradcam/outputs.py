"""What the gradcam stage computes and writes: GradCAM grids of the chosen mistakes at each layer
(for the predicted and the actual class) and ROAD faithfulness of each layer on a class-balanced
sample of test images, with stale grids of layers no longer asked for removed."""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from cifarlab.core import paths
from cifarlab.core.io import read_table, remove, save_figure, write_csv, write_json
from cifarlab.gradcam.faithfulness import balanced_indices, curves_table, road_curves
from cifarlab.gradcam.figures import faithfulness_figure, gradcam_figure
from cifarlab.gradcam.maps import figure_names, gradcam_maps, layer_titles
from cifarlab.predictions_csv import PREDICTION_COLUMNS, caption
from cifarlab.stats import normalised

if TYPE_CHECKING:
    from cifarlab.config import GradcamConfig
    from cifarlab.prepared import Prepared
    from cifarlab.stats import Stats


def explain_layers(cfg: GradcamConfig, model: nn.Module, names: list[str], data: Prepared, stats: Stats) -> None:
    """GradCAM at each of `names` (layers of `model`) and their ROAD curves, written to the outputs."""
    chosen = read_table(paths.MISCLASSIFIED, PREDICTION_COLUMNS)
    images = [data.x_test[i] for i in chosen["index"]]
    inputs = normalised(images, stats) if images else None
    targets = [torch.tensor(chosen[column].to_numpy()) for column in ("predicted_id", "actual_id")]
    captions = [caption(row) for row in chosen.itertuples()]
    figures, curves = {}, {}
    titles = layer_titles(model, names, data.x_test.shape[1])
    sample = normalised(data.x_test[balanced_indices(data.y_test, cfg.faithfulness.images)], stats)
    with torch.no_grad():
        sample_predicted = model(sample).argmax(1)
    for name in names:
        layer = model.get_submodule(name)
        maps = [gradcam_maps(model, layer, inputs, target, scaled=False) for target in targets] if images else [[], []]
        figures[name] = gradcam_figure(titles[name], images, *maps, captions, chosen)
        relevance = gradcam_maps(model, layer, sample, sample_predicted)
        curves[name] = road_curves(model, sample, relevance, cfg.faithfulness.fractions)
    ranked = sorted(names, key=lambda name: -curves[name].gap)

    stems = figure_names(names)
    drawn = {paths.GRADCAM_DIR / f"{stem}.png" for stem in stems.values()} | {paths.FAITHFULNESS_PNG}
    for stale in set(paths.GRADCAM_DIR.glob("*.png")) - drawn:  # grids of layers no longer asked for
        remove(stale)
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

