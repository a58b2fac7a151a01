"""Stage 6 — gradcam: captum LayerGradCam on the images the misclassify stage chose, at each
layer of gradcam.layers, for the predicted class ("why did it say cat") and the actual class
("where did it look for dog"); one grid per layer in plots/gradcam/<layer>.png. Then a deletion
check of faithfulness on the first test images -> metrics/gradcam.json."""
import pandas as pd
import torch

from cifarlab import paths
from cifarlab.augment import eval_transform
from cifarlab.checkpoint import load_checkpoint
from cifarlab.data.prepared import load_prepared
from cifarlab.errors import run_stage
from cifarlab.gradcam import deletion_drops, gradcam_maps, overlay
from cifarlab.io import save_figure, write_json
from cifarlab.misclassify import caption
from cifarlab.models import gradcam_layer_name
from cifarlab.params import load_params
from cifarlab.plots import gallery_figure


def _note(cam) -> str:
    return "" if cam.max() > 0 else "\n(map all zero: no positive evidence)"


def normalised(transform, images) -> torch.Tensor:
    """uint8 images as the model's input batch."""
    return torch.stack([transform(image=img)["image"] for img in images])


def layer_figure(model, layer_name, images, inputs, chosen):
    """Per image: the image, GradCAM for the predicted class, GradCAM for the actual class."""
    if not images:
        return gallery_figure([], [], columns=6, title="no misclassified test images to explain")
    layer = getattr(model, layer_name)
    predicted = gradcam_maps(model, layer, inputs, torch.tensor(chosen["predicted_id"].to_numpy()))
    actual = gradcam_maps(model, layer, inputs, torch.tensor(chosen["actual_id"].to_numpy()))
    panels, captions = [], []
    for img, cam_p, cam_a, row in zip(images, predicted, actual, chosen.itertuples()):
        panels += [img, overlay(img, cam_p), overlay(img, cam_a)]
        captions += [caption(row), f"why {row.predicted}?{_note(cam_p)}", f"where is {row.actual}?{_note(cam_a)}"]
    return gallery_figure(panels, captions, columns=6,
                          title=f"GradCAM at {layer_name}: image | predicted class | actual class")


def main() -> None:
    cfg = load_params()["gradcam"]
    model, ckpt = load_checkpoint(paths.MODEL)
    # resolves 'default'; an unknown layer fails here, before anything is written
    names = list(dict.fromkeys(gradcam_layer_name(model, name) for name in cfg["layers"]))
    data = load_prepared(paths.PREPARED)
    chosen = pd.read_csv(paths.MISCLASSIFIED)
    transform = eval_transform(ckpt["mean"], ckpt["std"])
    images = [data.x_test[i] for i in chosen["index"]]
    inputs = normalised(transform, images) if images else None
    figures = {name: layer_figure(model, name, images, inputs, chosen) for name in names}

    sample = data.x_test[: cfg["deletion"]["images"]]
    drop_top, drop_random = deletion_drops(model, getattr(model, names[0]), normalised(transform, sample),
                                           cfg["deletion"]["percent"])

    paths.GRADCAM_DIR.mkdir(parents=True, exist_ok=True)
    for stale in paths.GRADCAM_DIR.glob("*.png"):
        if stale.stem not in figures:
            stale.unlink()
    for name, figure in figures.items():
        save_figure(paths.GRADCAM_DIR / f"{name}.png", figure)
    write_json(paths.METRICS_GRADCAM, {
        "layers": names, "explained_images": len(images),
        "deletion": {"layer": names[0], "percent": cfg["deletion"]["percent"], "images": len(sample),
                     "confidence_drop_gradcam": round(drop_top, 6), "confidence_drop_random": round(drop_random, 6)},
    })
    print(f"GradCAM at {', '.join(names)} for {len(images)} images -> {paths.GRADCAM_DIR}/; occluding the top "
          f"{cfg['deletion']['percent']}% GradCAM pixels drops confidence by {drop_top:.3f} vs {drop_random:.3f} "
          f"for random pixels")


if __name__ == "__main__":
    run_stage(main)
