"""Starting training from a trained model (train.init_from) rather than from random weights, so a
student with a few hundred photos of their own classes starts from what the CIFAR-10 model has
learnt. Every weight is taken from the checkpoint except the head's rows for classes it does not
know: the head (the model's last Linear layer, one row per class) keeps the rows of the classes
both share, matched by name, and the seed initialises the rest."""
from __future__ import annotations

from torch import nn

from cifarlab.core.errors import UserError
from cifarlab.core.paths import user_path
from cifarlab.models.checkpoint import load_checkpoint

KEY = "train.init_from"


def start_from(model: nn.Module, source: str, model_name: str, classes: list[str], image_size: int) -> tuple[str, str]:
    """Load the checkpoint `source` names into `model` (built for `classes`, initialised by the
    seed); return a line saying what was taken and the checkpoint's weights digest (for
    models/training.json: the param names a file, the digest says which weights it held). A
    checkpoint of another model or image size is refused."""
    path = user_path(source)
    if not path.is_file():
        raise UserError(f"{KEY}: {source} is not a file; name a checkpoint of this project, e.g. a copy of "
                        "another run's models/model.pt, or '' to train from scratch")
    _, ckpt = load_checkpoint(path)
    if ckpt["model"] != model_name:
        raise UserError(f"{KEY}: {source} holds a {ckpt['model']} model, but this run trains {model_name}; "
                        f"train the same model (-S model={ckpt['model']})")
    if ckpt["image_size"] != image_size:
        raise UserError(f"{KEY}: {source} was trained on {ckpt['image_size']} px images, but data.image_size "
                        f"is {image_size}; use the same size")
    old_classes = list(ckpt["classes"])
    head = _head_names(model)
    rows = {new: old_classes.index(name) for new, name in enumerate(classes) if name in old_classes}
    weights = model.state_dict()
    for name, tensor in ckpt["state_dict"].items():
        if name not in head:
            weights[name] = tensor
            continue
        for new, old in rows.items():
            weights[name][new] = tensor[old]
    model.load_state_dict(weights)
    if old_classes == list(classes):
        return f"starting from {source}: every weight of its {model_name}", ckpt["digest"]
    kept = ", ".join(classes[new] for new in rows) or "none"
    return (f"starting from {source}: every weight of its {model_name} but the head, whose rows are kept for "
            f"the classes it was trained on ({kept}) and new for the others"), ckpt["digest"]


def _head_names(model: nn.Module) -> set[str]:
    """The state_dict names of the last Linear layer's tensors: one row per class."""
    last = None
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            last = name
    if last is None:
        raise UserError(f"{KEY}: this model has no Linear head to fit to the classes")
    return {f"{last}.{kind}" for kind, _ in model.get_submodule(last).named_parameters(recurse=False)}

