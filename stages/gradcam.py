"""Stage 6 — gradcam: captum LayerGradCam on the same images the misclassify stage chose,
for the predicted class at gradcam.layer; original and overlay side by side."""
import pandas as pd
import torch

from cifarlab import paths
from cifarlab.augment import eval_transform
from cifarlab.checkpoint import load_checkpoint
from cifarlab.data.prepared import load_prepared
from cifarlab.errors import run_stage
from cifarlab.gradcam import gradcam_maps, overlay
from cifarlab.io import save_figure
from cifarlab.models import gradcam_layer
from cifarlab.params import load_params
from cifarlab.plots import gallery_figure


def main() -> None:
    layer_name = load_params()["gradcam"]["layer"]
    model, ckpt = load_checkpoint(paths.MODEL)
    layer = gradcam_layer(model, layer_name)
    data = load_prepared(paths.PREPARED)
    chosen = pd.read_csv(paths.MISCLASSIFIED)
    images = [data.x_test[i] for i in chosen["index"]]
    panels, captions = [], []
    if images:
        transform = eval_transform(ckpt["mean"], ckpt["std"])
        inputs = torch.stack([transform(image=img)["image"] for img in images])
        maps = gradcam_maps(model, layer, inputs, torch.tensor(chosen["predicted_id"].to_numpy()))
        for img, cam, row in zip(images, maps, chosen.itertuples()):
            note = "" if cam.max() > 0 else " [map all zero]"
            panels += [img, overlay(img, cam)]
            captions += [f"{row.predicted} / {row.actual}", f"GradCAM: {row.predicted}{note}"]
    name = model.default_gradcam_layer if layer_name == "default" else layer_name
    title = (f"GradCAM at {name} for the predicted class (left: image, right: overlay)"
             if images else "no misclassified test images to explain")
    save_figure(paths.GRADCAM_PNG, gallery_figure(panels, captions, columns=4, title=title))
    print(f"GradCAM at layer {name} for {len(images)} images -> {paths.GRADCAM_PNG}")


if __name__ == "__main__":
    run_stage(main)
