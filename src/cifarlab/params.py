"""params.yaml: read with a safe loader and checked against one schema before a stage writes
anything, so a typo fails in one line that names the key, the bad value and what is allowed."""
from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Callable

import yaml

from cifarlab.errors import UserError
from cifarlab.misclassify import ORDERS

Check = Callable[[str, Any], None]


class ParamsError(UserError):
    pass


def _fail(key: str, value: Any, allowed: str) -> None:
    raise ParamsError(f"params.yaml: {key} = {value!r} is not allowed; expected {allowed}")


def integer(min_value: int | None = None) -> Check:
    def check(key: str, value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, int):
            _fail(key, value, "an integer" + (f" >= {min_value}" if min_value is not None else ""))
        if min_value is not None and value < min_value:
            _fail(key, value, f"an integer >= {min_value}")
    return check


def number(min_value: float | None = None, max_value: float | None = None,
           exclusive_min: bool = False) -> Check:
    low = "" if min_value is None else f"{'>' if exclusive_min else '>='} {min_value}"
    high = "" if max_value is None else f"<= {max_value}"
    allowed = "a number " + " and ".join(part for part in (low, high) if part)

    def check(key: str, value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            _fail(key, value, allowed.strip())
        too_low = min_value is not None and (value <= min_value if exclusive_min else value < min_value)
        too_high = max_value is not None and value > max_value
        if too_low or too_high:
            _fail(key, value, allowed.strip())
    return check


def probability() -> Check:
    return number(0.0, 1.0)


def boolean() -> Check:
    def check(key: str, value: Any) -> None:
        if not isinstance(value, bool):
            _fail(key, value, "true or false")
    return check


def text() -> Check:
    def check(key: str, value: Any) -> None:
        if not isinstance(value, str) or not value:
            _fail(key, value, "a non-empty string")
    return check


def one_of(options: Callable[[], list[str]] | list[str]) -> Check:
    def check(key: str, value: Any) -> None:
        names = options() if callable(options) else options
        if value not in names:
            _fail(key, value, "one of " + ", ".join(names))
    return check


def list_of(item: Check) -> Check:
    def check(key: str, value: Any) -> None:
        if not isinstance(value, list) or not value:
            _fail(key, value, "a non-empty list, e.g. [default]")
        for index, element in enumerate(value):
            item(f"{key}[{index}]", element)
    return check


def number_or_auto(min_value: float) -> Check:
    as_number = number(min_value, exclusive_min=True)

    def check(key: str, value: Any) -> None:
        if value != "auto":
            try:
                as_number(key, value)
            except ParamsError:
                _fail(key, value, f"a number > {min_value} or 'auto'")
    return check


def _model_names() -> list[str]:
    from cifarlab.models import model_names

    return model_names()


SCHEMA: dict[str, Any] = {
    "model": one_of(_model_names),
    "data": {
        "source": text(),
        "image_size": integer(8),
        "subset": {"train": integer(0), "test": integer(0)},
        "seed": integer(0),
    },
    "augment": {
        "crop": {"p": probability(), "padding": integer(0)},
        "hflip": {"p": probability()},
        "rotate": {"p": probability(), "limit": number(0, 180)},
        "shift_scale_rotate": {"p": probability(), "shift": number(0, 1), "scale": number(0, 1),
                               "rotate": number(0, 180)},
        "cutout": {"p": probability(), "size": integer(1)},
        "to_gray": {"p": probability()},
    },
    "train": {
        "epochs": integer(1),
        "batch_size": integer(1),
        "seed": integer(0),
        "label_smoothing": number(0, 1),
        "loader": one_of(["albumentations", "device"]),
        "compile": boolean(),
        "optimizer": {
            "name": one_of(["sgd", "adam", "adamw"]),
            "lr": number(0, exclusive_min=True),
            "momentum": number(0, 1),
            "nesterov": boolean(),
            "weight_decay": number(0),
        },
        "scheduler": {
            "name": one_of(["onecycle", "plateau", "step", "cosine", "none"]),
            "onecycle": {"max_lr": number_or_auto(0), "div_factor": number(1),
                         "peak_epoch": number(0, exclusive_min=True), "anneal": boolean()},
            "plateau": {"factor": number(0, 1, exclusive_min=True), "patience": integer(0)},
            "step": {"step_size": integer(1), "gamma": number(0, 1, exclusive_min=True)},
            "cosine": {"min_lr": number(0)},
        },
        "lr_finder": {"start_lr": number(0, exclusive_min=True), "end_lr": number(0, exclusive_min=True),
                      "num_iter": integer(5)},
    },
    "evaluate": {"batch_size": integer(1), "flip_tta": boolean()},
    "misclassify": {"count": integer(1), "order": one_of(list(ORDERS)), "seed": integer(0)},
    "gradcam": {"layers": list_of(text()),
                "deletion": {"percent": number(0, 100, exclusive_min=True), "images": integer(1)}},
}


def validate(params: Any, schema: dict[str, Any] = SCHEMA, prefix: str = "") -> None:
    """Raise ParamsError on the first unknown, missing or ill-typed key (depth first)."""
    where = prefix.rstrip(".") or "the top level"
    if not isinstance(params, dict):
        raise ParamsError(f"params.yaml: {where} must be a mapping of keys, got {params!r}")
    for key in params:
        if key not in schema:
            near = difflib.get_close_matches(str(key), list(schema), n=1)
            hint = f" (did you mean '{prefix}{near[0]}'?)" if near else ""
            raise ParamsError(
                f"params.yaml: unknown key '{prefix}{key}'{hint}; allowed at {where}: "
                + ", ".join(schema))
    for key, rule in schema.items():
        if key not in params:
            raise ParamsError(f"params.yaml: missing key '{prefix}{key}'")
        if isinstance(rule, dict):
            validate(params[key], rule, f"{prefix}{key}.")
        else:
            rule(f"{prefix}{key}", params[key])


def check_consistency(params: dict[str, Any]) -> None:
    """Rules that tie two keys together."""
    from cifarlab.device_data import check_supported
    from cifarlab.models import gradcam_layer_names

    train = params["train"]
    peak = train["scheduler"]["onecycle"]["peak_epoch"]
    if train["scheduler"]["name"] == "onecycle" and peak >= train["epochs"]:
        raise ParamsError(f"params.yaml: train.scheduler.onecycle.peak_epoch = {peak} must be less "
                          f"than train.epochs = {train['epochs']}")
    if train["loader"] == "device":
        check_supported(params["augment"])
    finder = train["lr_finder"]
    if finder["start_lr"] >= finder["end_lr"]:
        raise ParamsError(f"params.yaml: train.lr_finder.start_lr = {finder['start_lr']} must be "
                          f"below train.lr_finder.end_lr = {finder['end_lr']}")
    layers = ["default", *gradcam_layer_names(params["model"])]
    for index, layer in enumerate(params["gradcam"]["layers"]):
        if layer not in layers:
            raise ParamsError(f"params.yaml: gradcam.layers[{index}] = {layer!r} is not a layer "
                              f"of {params['model']}; allowed: {', '.join(layers)}")


def load_params(path: str | Path = "params.yaml") -> dict[str, Any]:
    """Read params.yaml safely and validate it against SCHEMA and the cross-key rules."""
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{path}: not found; run the stage from the project root")
    try:
        params = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ParamsError(f"{path}: not valid YAML ({err})") from None
    validate(params)
    check_consistency(params)
    return params
