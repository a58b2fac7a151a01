"""`cifarlab predict PATH...`: the trained model (models/model.pt) on your own images.
Each file and every image in each folder is read with the data sources' own reader (any format
Pillow opens, EXIF orientation, 16-bit, alpha) and brought to the model's input size exactly as
the training images were (cifarlab.model_input: the centre square, resized). One row per image:
the top classes with their probabilities, calibrated by the temperature of models/calibration.json;
a file that cannot be read is one line on stderr, and the exit status is 1 if any could not."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from cifarlab.commands.user_files import image_files, read_photo, shown_name
from cifarlab.core import paths
from cifarlab.core.errors import UserError, run_command
from cifarlab.core.io import check_output, save_figure, write_csv
from cifarlab.download.imagefolder import decode_image
from cifarlab.models.checkpoint import checkpoint_stats, load_checkpoint, load_temperature
from cifarlab.stats import Stats, normalised

BATCH = 256  # images per forward pass


def read_inputs(files: list[Path], size: int) -> tuple[list[Path], list[np.ndarray], list[str]]:
    """The images that could be read, as model inputs, and one error line per file that could not."""
    kept, images, errors = [], [], []
    for path in files:
        try:
            images.append(decode_image(read_photo(path), shown_name(path), size))
            kept.append(path)
        except UserError as err:
            errors.append(str(err))
    return kept, images, errors


@torch.no_grad()
def probabilities(model: torch.nn.Module, images: list[np.ndarray], stats: Stats,
                  temperature: float = 1.0) -> torch.Tensor:
    """Softmax over the classes for each image, the logits divided by the calibrating
    temperature, BATCH images per forward pass."""
    out = [torch.softmax(model(normalised(images[start:start + BATCH], stats)).float() / temperature, dim=1)
           for start in range(0, len(images), BATCH)]
    return torch.cat(out) if out else torch.zeros(0)


def top_table(files: list[Path], probs: torch.Tensor, classes: list[str], top: int) -> pd.DataFrame:
    """One row per image: the file, then class and probability of its `top` likeliest classes."""
    k = min(top, len(classes))
    values, indices = probs.topk(k, dim=1) if len(files) else (probs, probs)
    rows = []
    for path, vals, idx in zip(files, values.tolist(), indices.tolist()):
        row = {"file": shown_name(path)}
        for rank, (p, i) in enumerate(zip(vals, idx), start=1):
            row[f"class_{rank}"], row[f"probability_{rank}"] = classes[i], round(p, 4)
        rows.append(row)
    return pd.DataFrame(rows)


def explain(model: torch.nn.Module, ckpt: dict, files: list[Path], images: list[np.ndarray], predicted: list[int],
            folder: Path, first: int = 1) -> None:
    """Per image, GradCAM of the predicted class at the model's default layer (the gradcam
    stage's code), over the image as the model saw it: folder/<n>-<file stem>.png, n counting
    from `first`."""
    # captum and matplotlib load only when explanations are asked for: a plain prediction starts faster
    from cifarlab.gallery import gallery_figure
    from cifarlab.gradcam.figures import overlay
    from cifarlab.gradcam.maps import gradcam_maps
    from cifarlab.models.registry import gradcam_default

    layer_name = gradcam_default(model, ckpt["image_size"])
    layer = model.get_submodule(layer_name)
    stats = checkpoint_stats(ckpt)
    for number, (path, image, label) in enumerate(zip(files, images, predicted), start=first):
        cam = gradcam_maps(model, layer, normalised([image], stats), torch.tensor([label]))[0]
        captions = [shown_name(Path(path.name)), f"why {ckpt['classes'][label]}?"]
        figure = gallery_figure([image, overlay(image, cam)], captions, columns=2, title=f"GradCAM at {layer_name}")
        save_figure(folder / f"{number:04d}-{path.stem}.png", figure)


def _check_outputs(csv: Path | None, explain: Path | None) -> None:
    """Where the results go, checked before any prediction work."""
    if csv is not None:
        check_output("--csv", csv, "file")
    if explain is not None:
        check_output("--explain", explain, "folder")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cifarlab predict", description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="+", type=Path, help="image files and folders of images")
    parser.add_argument("--top", type=int, default=3, help="classes shown per image (default 3)")
    parser.add_argument("--csv", type=Path, help="also write the table to this CSV file")
    parser.add_argument("--explain", type=Path, metavar="DIR", help="write a GradCAM overlay per image into DIR")
    parser.add_argument("--model", type=Path, default=paths.MODEL, help=f"the checkpoint (default {paths.MODEL})")
    args = parser.parse_args(argv)
    if args.top < 1:
        parser.error("--top must be at least 1")
    try:
        _check_outputs(args.csv, args.explain)
        model, ckpt = load_checkpoint(args.model)
        found = image_files(args.paths)
        if not found:
            raise UserError(f"no files in {', '.join(map(str, args.paths))}; nothing to predict")
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    temperature, uncalibrated = load_temperature(args.model, ckpt)
    if uncalibrated:
        print(f"note: {uncalibrated}", file=sys.stderr)
    tables, failed, stats = [], 0, checkpoint_stats(ckpt)
    slow = 10 if args.explain else BATCH  # a progress bar from this many images on
    # a bar for a terminal only: elsewhere (a log, a pipe) it would be redrawn after every printed row
    with tqdm(total=len(found), desc="predicting", unit="image", disable=None if len(found) >= slow else True) as bar:
        for start in range(0, len(found), BATCH):  # a batch at a time: memory does not grow with the folder
            files, images, errors = read_inputs(found[start:start + BATCH], ckpt["image_size"])
            for line in errors:
                tqdm.write(f"error: {line}", file=sys.stderr)
            probs = probabilities(model, images, stats, temperature)
            table = top_table(files, probs, ckpt["classes"], args.top)
            for row in table.itertuples(index=False):
                tqdm.write(f"{row.file}: " + ", ".join(f"{row[i]} {row[i + 1]:.2f}" for i in range(1, len(row), 2)),
                           file=sys.stdout)
            if args.explain and files:
                explain(model, ckpt, files, images, probs.argmax(1).tolist(), args.explain, first=start + 1)
            tables.append(table)
            failed += len(errors)
            bar.update(len(files) + len(errors))
    if args.csv:
        write_csv(args.csv, pd.concat(tables, ignore_index=True))
    return 1 if failed else 0

if __name__ == "__main__":
    sys.exit(run_command(main))
