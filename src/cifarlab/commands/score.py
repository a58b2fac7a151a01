"""`cifarlab score DATA`: a trained model scored on labelled images of your own, without training.
DATA is any source the download stage reads (its test split is scored) or a folder or archive of
class folders, <class>/<images>, every image of which is scored, in sub-folders too (a file that
cannot be read is one line, as in predict, and the rest are scored). Class folders are matched to
the model's classes as the download stage matches train/ and test/ (regardless of case, surrounding
spaces and Unicode form); a class the model does not know, a class folder without images and one
file given as DATA are refused in one line. Images are prepared as the model's training images were
(model_input). They are scored by the evaluate stage's own code (evaluate/scoring.py), with the
same test-time augmentation (--tta, evaluate.tta's values), and written as it writes them, into
--out: metrics.json (as metrics/evaluate.json: accuracy with and without TTA, each with its 95%
Wilson interval, the loss), classes.json (as eval/classes.json: per class), predictions.csv (as
eval/predictions.csv: per image), confusion.csv and misclassified.png; all computed before anything
is written."""
from __future__ import annotations

import argparse
import posixpath
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from cifarlab.commands.predict import BATCH
from cifarlab.config import TTA_MODES
from cifarlab.core import paths
from cifarlab.core.errors import UserError, run_command
from cifarlab.core.io import check_output, remove, save_figure, together, write_csv, write_json
from cifarlab.download.filetree import FileTree, is_archive, open_tree
from cifarlab.download.imagefolder import MATCHING, class_folders, class_key, class_name, decode_image
from cifarlab.download.sources import find_root, prepare
from cifarlab.evaluate.scoring import score
from cifarlab.feed.batches import eval_batches
from cifarlab.feed.device import select_device, usable_precision
from cifarlab.models.checkpoint import checkpoint_stats, load_checkpoint

GALLERY = 20  # misclassified images shown, most confident first


def _class_folder_tree(tree: FileTree, size: int) -> tuple[list[np.ndarray], list[int], list[str], list[str]]:
    """Every image of a <class>/<images> tree (or one wrapped in a single folder), with its class,
    those in sub-folders of a class folder too; a class folder without images is refused (a class
    never vanishes from the counts in silence); a file that cannot be read is one error line, as
    predict treats it, and the rest are scored."""
    root = ""
    if not tree.files_in("") and len(tree.subdirs("")) == 1 and tree.subdirs(tree.subdirs("")[0]):
        root = tree.subdirs("")[0]
    folders = list(class_folders(tree, root).values())
    if not folders:
        raise UserError(f"{tree.label}: no class folders; expected <class>/<image files>, or a data source with a "
                        "test split")
    label_of = {}
    for label, folder in enumerate(folders):
        files = tree.files_under(posixpath.join(root, folder))
        if not files:
            raise UserError(f"{tree.where(posixpath.join(root, folder))}: a class folder without images; "
                            "remove it or add its images")
        label_of.update(dict.fromkeys(files, label))
    classes = [class_name(folder) for folder in folders]
    images, labels, errors = [], [], []
    for name, data in tqdm(tree.read(sorted(label_of)), total=len(label_of), desc="reading", unit="img",
                           leave=False, disable=None):
        try:
            images.append(decode_image(data, tree.where(name), size))
            labels.append(label_of[name])
        except UserError as err:
            errors.append(str(err))
    return images, labels, classes, errors


def labelled_images(source: Path, size: int) -> tuple[list[np.ndarray], list[int], list[str], list[str]]:
    """(images, labels, class names, error lines) of DATA: a data source's test split, else a
    class-folder tree."""
    if not source.exists():
        raise UserError(f"{source}: no such file or folder")
    if source.is_file() and not is_archive(source):
        raise UserError(f"{source}: one file, not labelled images; give a folder (or archive) of <class>/<images>, "
                        f"or classify it with `cifarlab predict {source}`")
    with open_tree(source) as tree:
        try:
            find_root(tree)
        except UserError:  # no train/ and test/ split: class folders
            return _class_folder_tree(tree, size)
    data = prepare(str(source), size, {"train": 0, "test": 0}, 0, paths.RAW_DIR)
    return list(data.x_test), data.y_test.tolist(), data.classes, []


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cifarlab score", description=__doc__.split("\n\n")[0])
    parser.add_argument("data", type=Path, help="labelled images: a data source, or <class>/<images>")
    parser.add_argument("--model", type=Path, default=paths.MODEL, help=f"the checkpoint (default {paths.MODEL})")
    parser.add_argument("--out", type=Path, default=Path("scores"), help="folder for the results (default scores/)")
    parser.add_argument("--tta", choices=TTA_MODES, default="flip_translate",
                        help="test-time augmentation, as evaluate.tta (default flip_translate, the pipeline's)")
    args = parser.parse_args(argv)
    try:
        check_output("--out", args.out, "folder")
        device = select_device()
        model, ckpt = load_checkpoint(args.model, device)
        images, labels, classes, errors = labelled_images(args.data, ckpt["image_size"])
        known = list(ckpt["classes"])
        model_label = {class_key(name): label for label, name in enumerate(known)}
        unknown = [ascii(name) for name in classes if class_key(name) not in model_label]
        if unknown:
            raise UserError(f"{args.data}: classes {', '.join(unknown)} are not among the model's {len(known)} "
                            f"({', '.join(map(ascii, known))}; {MATCHING}); remove or rename those folders")
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for line in errors:
        print(f"error: {line}", file=sys.stderr)
    if not images:
        print(f"error: {args.data}: none of its images could be read; nothing scored", file=sys.stderr)
        return 2
    actual = np.array([model_label[class_key(classes[label])] for label in labels], dtype=np.int64)
    batches = eval_batches(np.stack(images), actual, checkpoint_stats(ckpt), BATCH, device, "device")
    scored = score(model, batches, device, usable_precision(ckpt["precision"], device), args.tta, known)
    table, metrics = scored.table, scored.metrics
    predicted, confidence = table["predicted_id"].to_numpy(), table["confidence"].to_numpy()
    wrong = np.flatnonzero(predicted != actual)
    wrong = wrong[np.argsort(-confidence[wrong], kind="stable")][:GALLERY]
    confusion = pd.DataFrame(scored.matrix, index=pd.Index(known, name="actual"), columns=known)
    from cifarlab.gallery import gallery_figure  # matplotlib loads only when there is something to draw

    with together():  # every file or none
        write_json(args.out / "metrics.json", metrics)
        write_json(args.out / "classes.json", scored.details)
        write_csv(args.out / "predictions.csv", table)
        write_csv(args.out / "confusion.csv", confusion.reset_index())
        remove(args.out / "misclassified.png")  # a gallery of an earlier scoring is not this one's
        if len(wrong):
            captions = [f"{known[actual[i]]} -> {known[predicted[i]]} {confidence[i]:.2f}" for i in wrong]
            save_figure(args.out / "misclassified.png", gallery_figure([images[i] for i in wrong], captions,
                                                                      title="misclassified, most confident first"))
    bounds = metrics["accuracy_95"]
    plain = f" ({metrics['accuracy_without_tta']:.2f}% without)" if args.tta != "none" else ""
    print(f"{metrics['accuracy']:.2f}% of {metrics['num_test_images']} images right with {args.tta} TTA{plain} (95% "
          f"interval {bounds['low']:.2f}-{bounds['high']:.2f}%) -> {args.out}/")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(run_command(main))
