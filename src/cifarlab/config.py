"""params.yaml as typed config: one pydantic model per section, so every function takes the
sub-config it needs and a typo fails before a stage writes anything, in one line that names the
key, the bad value and what is allowed. The option lists live here, beside the keys they
constrain, and this module imports nothing heavy (no torch, albumentations or pandas): every
stage checks all of params.yaml first, and most never need those libraries."""
from __future__ import annotations

import difflib
import reprlib
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo

from cifarlab.core.errors import UserError, set_key
from cifarlab.core.paths import MODEL, user_path

OPTIMIZERS = ("sgd", "muon", "adam", "adamw")
SCHEDULERS = ("onecycle", "linear", "plateau", "step", "cosine", "none")
LOADERS = ("albumentations", "device")
PRECISIONS = ("auto", "fp32", "bf16")
CROP_FILLS = ("mean", "reflect")
ORDERS = ("confidence", "index", "random", "per_class")  # how misclassify picks mistakes (explain/misclassified.py)
TTA_MODES = ("none", "flip", "flip_translate")


AUTO = "auto"  # model / train.epochs / train.low_res.epochs / train.precision: the plan stage picks (cifarlab.plan)


class ParamsError(UserError):
    pass


def _choice(options) -> Any:
    return Literal[tuple(options)]


Probability = Annotated[float, Field(ge=0.0, le=1.0)]
Positive = Annotated[float, Field(gt=0)]


class Section(BaseModel):
    """Every section: no unknown keys, no silent type coercion (True is not 1, "1" is not 1)."""
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Subset(Section):
    train: int = Field(ge=0)
    test: int = Field(ge=0)


class DataConfig(Section):
    source: str = Field(min_length=1)
    image_size: int = Field(ge=8, le=512)  # a dataset of 512x512 images already needs 3 GB per 4,000 images
    subset: Subset
    val: int = Field(ge=0)
    seed: int = Field(ge=0)


class Crop(Section):
    p: Probability
    padding: int = Field(ge=0)
    fill: _choice(CROP_FILLS)  # the padding: the dataset mean, or the image mirrored at its edge


class Flip(Section):
    p: Probability


class HorizontalFlip(Section):
    p: Probability
    alternate: bool  # each image flipped on every other epoch instead of by a fresh coin each time


class Rotate(Section):
    p: Probability
    limit: float = Field(ge=0, le=180)


class ShiftScaleRotate(Section):
    p: Probability
    shift: float = Field(ge=0, le=1)
    scale: float = Field(ge=0, le=1)
    rotate: float = Field(ge=0, le=180)


class Cutout(Section):
    p: Probability
    size: int = Field(ge=1)


class AugmentConfig(Section):
    """Named transforms in the order they run, each with its own probability."""
    crop: Crop
    hflip: HorizontalFlip
    rotate: Rotate
    shift_scale_rotate: ShiftScaleRotate
    cutout: Cutout
    to_gray: Flip


class MuonConfig(Section):
    lr: float = Field(gt=0)  # per optimiser step, as a fraction of the filters' fixed norm
    momentum: float = Field(ge=0, lt=1)


class OptimizerConfig(Section):
    name: _choice(OPTIMIZERS)
    lr: float = Field(gt=0)
    momentum: float = Field(ge=0, lt=1)  # 1 never forgets a gradient: SGD diverges, decoupled units divide by 0
    nesterov: bool
    weight_decay: float = Field(ge=0)
    decoupled: bool  # lr and weight_decay per 1,024 images, independent of momentum and batch size
    norm_bias_lr_scale: float = Field(gt=0)  # LR multiplier for normalisation layers' biases
    muon: MuonConfig  # the convolution filters' optimiser when name is muon


class OneCycleConfig(Section):
    max_lr: Union[Literal["auto"], Positive] = Field(description="a number > 0 or 'auto'")
    div_factor: float = Field(ge=1)
    peak_epoch: float = Field(gt=0)
    anneal: bool


class LinearConfig(Section):
    warmup: float = Field(ge=0, lt=1)  # fraction of all steps spent rising from start to the peak
    start: float = Field(gt=0, le=1)  # first LR as a fraction of the peak (optimizer.lr)
    end: float = Field(ge=0, le=1)  # last LR as a fraction of the peak


class PlateauConfig(Section):
    factor: float = Field(gt=0, le=1)
    patience: int = Field(ge=0)


class StepConfig(Section):
    step_size: int = Field(ge=1)
    gamma: float = Field(gt=0, le=1)


class CosineConfig(Section):
    min_lr: float = Field(ge=0)


class SchedulerConfig(Section):
    name: _choice(SCHEDULERS)
    onecycle: OneCycleConfig
    linear: LinearConfig
    plateau: PlateauConfig
    step: StepConfig
    cosine: CosineConfig


class LRFinderConfig(Section):
    start_lr: float = Field(gt=0)
    end_lr: float = Field(gt=0)
    num_iter: int = Field(ge=5)


class LookaheadConfig(Section):
    every: int = Field(ge=0)  # optimiser steps between averages; 0 = off
    decay: float = Field(ge=0, lt=1)  # weight of the average at the end of training
    power: float = Field(ge=0)  # the weight grows as decay * (progress ** power)


Epochs = Union[Literal["auto"], Annotated[int, Field(ge=1)]]


class LowResConfig(Section):
    size: int = Field(ge=8)  # pixels a side
    epochs: Union[Literal["auto"], Annotated[int, Field(ge=0)]] = Field(
        description="a number of epochs >= 0 or 'auto'")  # the first this many epochs train at `size`; 0 = off


class TrainConfig(Section):
    @field_validator("init_from", mode="before")
    @classmethod
    def _null_is_empty(cls, value: object) -> object:
        return "" if value is None else value

    epochs: Epochs = Field(description="a number of epochs >= 1 or 'auto'")
    batch_size: int = Field(ge=1)
    micro_batch: int = Field(ge=0)  # images per forward/backward pass; gradients add up to the batch's
    seed: int = Field(ge=0)
    init_from: str  # a checkpoint to start from ('' or null = random weights): see cifarlab.train.init_from
    label_smoothing: float = Field(ge=0, le=1)
    loader: _choice(LOADERS)
    workers: Union[Literal["auto"], Annotated[int, Field(ge=0)]] = Field(
        description="a number of DataLoader processes >= 0 or 'auto'")
    precision: _choice(PRECISIONS)
    checkpoint: Literal["last", "best_val"]  # the weights after the last epoch, or of the best validation epoch
    compile: bool
    processes: int = Field(ge=1)  # data-parallel processes on this machine (torch.distributed)
    sync_bn: bool  # synchronise BatchNorm statistics across processes (CUDA only)
    optimizer: OptimizerConfig
    scheduler: SchedulerConfig
    lr_finder: LRFinderConfig
    lookahead: LookaheadConfig
    test_curve: bool  # score the test split after every epoch, for the curves only
    low_res: LowResConfig


class EvaluateConfig(Section):
    batch_size: int = Field(ge=1)
    tta: _choice(TTA_MODES)


class RobustnessConfig(Section):
    images_per_class: int = Field(ge=0)  # 0: the whole test split
    seed: int = Field(ge=0)
    frost: str = Field(min_length=1)  # where the frost photographs come from (robustness/frost.py)


class MisclassifyConfig(Section):
    count: int = Field(ge=1)
    order: _choice(ORDERS)
    seed: int = Field(ge=0)


class FaithfulnessConfig(Section):
    fractions: list[Annotated[float, Field(gt=0, lt=1)]] = Field(
        min_length=1, description="a non-empty list of fractions between 0 and 1, e.g. [0.1, 0.5, 0.9]")
    images: int = Field(ge=1)


class GradcamConfig(Section):
    layers: list[Annotated[str, Field(min_length=1)]] = Field(min_length=1,
                                                              description="a non-empty list, e.g. [default]")
    faithfulness: FaithfulnessConfig


class Rung(Section):
    """One candidate of plan.ladder: a network and its epochs, with the accuracy it reached on a
    validation split (docs/results.md), which ranks the candidates."""
    model: str = Field(min_length=1)  # a name of cifarlab.models, checked in Params
    epochs: int = Field(ge=1)
    low_res_epochs: int = Field(ge=0)  # of them, the first this many at train.low_res.size
    val_acc: float = Field(gt=0, le=100)  # %, plain, on 5,000 training images held out of its training

    @model_validator(mode="after")
    def _fewer_low_res(self) -> Rung:
        if self.low_res_epochs >= self.epochs:
            raise ParamsError(f"params.yaml: plan.ladder entry {self.model}: low_res_epochs = {self.low_res_epochs} "
                              f"must be fewer than its epochs = {self.epochs}")
        return self


class PlanConfig(Section):
    budget_minutes: float = Field(ge=0)  # the whole `dvc repro`, this stage's measurement included; 0 = no limit
    ladder: list[Rung] = Field(min_length=1, description="a non-empty list of {model, epochs, low_res_epochs, "
                                                         "val_acc}, most accurate first")


CHOICE_KEY = "trained"  # plan/choice.json's one key: `dvc exp show` lists trained.model beside params' model


class Choice(Section):
    """What the plan stage chose for this machine (plan/choice.json): every value of the run that
    params.yaml may leave to it, concrete; the train stage reads it as a dep."""
    model: str = Field(min_length=1)
    epochs: int = Field(ge=1)
    low_res_epochs: int = Field(ge=0)
    precision: Literal["fp32", "bf16", "fp16"]


class Params(Section):
    recipe: str = Field(min_length=1)  # what set the values: a conf/recipe/ name, or default (the model's own)
    model: str = Field(min_length=1)  # auto, a network of the zoo, or your own in nets/ (checked below)
    plan: PlanConfig
    data: DataConfig
    augment: AugmentConfig
    train: TrainConfig
    evaluate: EvaluateConfig
    robustness: RobustnessConfig
    misclassify: MisclassifyConfig
    gradcam: GradcamConfig

    @model_validator(mode="after")
    def _keys_that_agree(self) -> Params:
        """Rules that tie two keys together (a ParamsError passes through pydantic unchanged)."""
        _check_models(self)
        train = self.train
        if self.data.val == 0:
            for key, value in (("train.checkpoint", train.checkpoint), ("train.scheduler.name", train.scheduler.name)):
                if value in ("best_val", "plateau"):
                    raise ParamsError(f"params.yaml: {key} = {value} decides on the validation split, but data.val "
                                      f"= 0 turns it off; {set_key('data.val', '5000')} or choose another value")
        if train.batch_size % train.processes:
            raise ParamsError(f"params.yaml: train.batch_size = {train.batch_size} is the global batch and must "
                              f"divide evenly among train.processes = {train.processes}")
        if train.scheduler.name == "cosine" and train.scheduler.cosine.min_lr >= train.optimizer.lr:
            raise ParamsError(f"params.yaml: train.scheduler.cosine.min_lr = {train.scheduler.cosine.min_lr} is the "
                              f"floor the LR decays to and must be below train.optimizer.lr = {train.optimizer.lr} "
                              "(both in train.optimizer's units)")
        low_res = train.low_res
        if isinstance(low_res.epochs, int) and isinstance(train.epochs, int) and 0 < low_res.epochs >= train.epochs:
            raise ParamsError(f"params.yaml: train.low_res.epochs = {low_res.epochs} must be fewer than train.epochs "
                              f"= {train.epochs} (the last epochs train at data.image_size), or 0")
        low_res_models = [rung.model for rung in self.rungs() if rung.low_res_epochs] if low_res.epochs == AUTO \
            else list(self.model_choices()) if low_res.epochs else []
        if low_res_models and low_res.size >= self.data.image_size:
            raise ParamsError(f"params.yaml: train.low_res.size = {low_res.size} must be below data.image_size "
                              f"= {self.data.image_size}, or {set_key('train.low_res.epochs', '0')}")
        if train.epochs == AUTO and not self.rungs():
            raise ParamsError(f"params.yaml: train.epochs = auto takes the epochs of a plan.ladder entry, and none is "
                              f"for model {self.model}; {set_key('train.epochs', '10')}")
        if train.init_from and user_path(train.init_from).resolve() == (Path.cwd() / MODEL).resolve():
            raise ParamsError(f"params.yaml: train.init_from = {train.init_from} is the train stage's own output, "
                              "which dvc repro deletes before it trains; copy it first (cp models/model.pt "
                              "start.pt) and start from the copy (-S train.init_from=start.pt)")
        if train.lr_finder.start_lr >= train.lr_finder.end_lr:
            raise ParamsError(f"params.yaml: train.lr_finder.start_lr = {train.lr_finder.start_lr} must be "
                              f"below train.lr_finder.end_lr = {train.lr_finder.end_lr}")
        if train.optimizer.decoupled and train.optimizer.name not in ("sgd", "muon"):
            raise ParamsError(f"params.yaml: train.optimizer.decoupled = true is defined for sgd and muon only, "
                              f"not {train.optimizer.name}; {set_key('train.optimizer.decoupled', 'false')} or use sgd")
        flip = self.augment.hflip
        if flip.alternate and flip.p > 0 and (flip.p != 0.5 or train.loader != "device"):
            raise ParamsError(f"params.yaml: augment.hflip.alternate = true flips each image on every other "
                              f"epoch: it needs augment.hflip.p = 0.5 (got {flip.p}) and train.loader = device "
                              f"(got {train.loader})")
        crop = self.augment.crop
        if crop.fill == "reflect" and crop.padding >= self.data.image_size:
            raise ParamsError(f"params.yaml: augment.crop.padding = {crop.padding} must be below data.image_size "
                              f"= {self.data.image_size} to pad by reflection")
        return self

    def rungs(self) -> list[Rung]:
        """The ladder entries this run may train: all of them for `model: auto`, else the named model's."""
        return [rung for rung in self.plan.ladder if self.model in (AUTO, rung.model)]

    def model_choices(self) -> tuple[str, ...]:
        """The models a run of these params may train: the ladder's for auto, or the one named."""
        return tuple(dict.fromkeys(rung.model for rung in self.rungs())) if self.model == AUTO else (self.model,)

    def planned(self, choice: Choice) -> Params:
        """These params with what the plan stage chose made concrete: the values train reads."""
        low_res = self.train.low_res.model_copy(update={"epochs": choice.low_res_epochs})
        train = self.train.model_copy(update={"epochs": choice.epochs, "low_res": low_res,
                                              "precision": choice.precision})
        return self.model_copy(update={"model": choice.model, "train": train})



def _check_models(params: Params) -> None:
    """`model` and every plan.ladder entry's name a network here (the zoo's, or nets/<name>.py).
    Which layers and image sizes a network takes is checked where it is built (the plan stage,
    before anything trains): that needs torch, which this module leaves alone."""
    from cifarlab.models import model_names, source_file

    known = model_names()
    named = [("model", params.model)] + [(f"plan.ladder[{index}].model", rung.model)
                                         for index, rung in enumerate(params.plan.ladder)]
    for key, name in named:
        if key == "model" and name == AUTO:
            continue
        if name not in known:
            allowed = ("auto, " if key == "model" else "") + ", ".join(known)
            raise ParamsError(f"params.yaml: {key} = {shown(name)} is not a network here; allowed: {allowed}, or "
                              "your own in nets/<name>.py (`cifarlab new <name>` starts one)")
        source_file(name)  # a file of nets/ named like a zoo network is refused


def _allowed(field: FieldInfo) -> str:
    """What a field accepts, in words, from its type and bounds."""
    if field.description:
        return field.description
    kind = field.annotation
    if get_origin(kind) is Literal:
        return "one of " + ", ".join(get_args(kind))
    if kind is bool:
        return "true or false"
    if kind is str:
        return "a non-empty string"
    words = {">=": "ge", ">": "gt", "<=": "le", "<": "lt"}
    bounds = [f"{symbol} {getattr(rule, attr)}" for rule in field.metadata for symbol, attr in words.items()
              if isinstance(rule, annotated_types.BaseMetadata) and hasattr(rule, attr)]
    return ("an integer" if kind is int else "a number") + (" " + " and ".join(bounds) if bounds else "")


def _walk(loc: tuple) -> tuple[type[BaseModel], str, FieldInfo | None]:
    """The model holding the field at `loc`, its dotted key and the field (None for a section)."""
    model, key, field = Params, "", None
    for part in loc:
        if isinstance(part, int):
            key += f"[{part}]"
            continue
        fields = model.model_fields
        if part not in fields:  # a union member's tag or an unknown key: the key ends here
            break
        key = f"{key}.{part}" if key else part
        field = fields[part]
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            model, field = field.annotation, None
    return model, key, field


_SHORT = reprlib.Repr()
_SHORT.maxlevel, _SHORT.maxlist, _SHORT.maxdict, _SHORT.maxstring, _SHORT.maxother = 2, 4, 4, 60, 60


def shown(value: Any) -> str:
    """A value as an error shows it: at most a line, however large or deeply nested (a YAML
    alias bomb is small on disk and gigabytes when printed in full)."""
    return _SHORT.repr(value)


def _message(error: dict) -> str:
    loc = tuple(error["loc"])
    kind = error["type"]
    if kind == "extra_forbidden":
        parent, where, _ = _walk(loc[:-1])
        key = f"{where}.{loc[-1]}" if where else str(loc[-1])
        near = difflib.get_close_matches(str(loc[-1]), list(parent.model_fields), n=1)
        hint = f" (did you mean '{where + '.' if where else ''}{near[0]}'?)" if near else ""
        return (f"unknown key '{key}'{hint}; allowed at {where or 'the top level'}: "
                + ", ".join(parent.model_fields))
    _, key, field = _walk(loc)
    if kind == "missing":
        return f"missing key '{key}'"
    if field is None and kind in ("model_type", "model_attributes_type"):
        return f"{key or 'the top level'} must be a mapping of keys, got {shown(error['input'])}"
    if any(isinstance(part, int) for part in loc):  # an element of a list: say what one element may be
        field = FieldInfo.from_annotation(get_args(field.annotation)[0])
    return f"{key} = {shown(error['input'])} is not allowed; expected {_allowed(field)}"


REPLACED_KEYS = {
    ("evaluate", "flip_tta"): "evaluate.flip_tta was replaced by evaluate.tta: none, flip or flip_translate",
}


def parse_params(raw: Any) -> Params:
    """Validate a params mapping; the first problem becomes one ParamsError line."""
    for (section, key), message in REPLACED_KEYS.items():
        if isinstance(raw, dict) and isinstance(raw.get(section), dict) and key in raw[section]:
            raise ParamsError(f"params.yaml: {message}")
    try:
        return Params.model_validate(raw)
    except ValidationError as err:
        errors = err.errors()
        unknown = [e for e in errors if e["type"] == "extra_forbidden"]  # a typo also shows as a missing key
        raise ParamsError(f"params.yaml: {_message((unknown or errors)[0])}") from None


class _UniqueKeys(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (PyYAML keeps the last in
    silence; DVC refuses the file, so the stage and DVC would disagree about the params)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} is given twice (line {key_node.start_mark.line + 1}); keep one",
                    key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def _yaml_problem(err: yaml.YAMLError) -> str:
    """What the YAML parser found wrong, and where, in one line (its own message spans several)."""
    problem, mark = getattr(err, "problem", None), getattr(err, "problem_mark", None)
    if problem and mark is not None and "line" not in problem:
        return f"{problem} at line {mark.line + 1}, column {mark.column + 1}"
    return " ".join((problem or str(err)).split())[:300]


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read params.yaml with a safe loader and validate it."""
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{path}: not found; run the stage from the project root")
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeys)
    except UnicodeDecodeError as err:
        raise ParamsError(f"{path}: not UTF-8 text (byte {err.object[err.start]:#04x} at offset {err.start}); "
                          "save it as UTF-8") from None
    except yaml.YAMLError as err:
        raise ParamsError(f"{path}: not valid YAML ({_yaml_problem(err)})") from None
    params = parse_params(raw)
    _note_hand_edits(path, raw)
    return params


def load_choice(params: Params, path: str | Path) -> tuple[Params, str]:
    """`params` with the plan stage's choice (plan/choice.json) made concrete, and what chose the
    model, in words. A choice that no longer fits params.yaml (the plan did not run since) is one
    line naming the stage to rerun."""
    path = Path(path)
    rerun = "rerun `dvc repro plan` (or `dvc repro`)"
    try:
        choice = Choice.model_validate(yaml.safe_load(path.read_text(encoding="utf-8"))[CHOICE_KEY])
    except FileNotFoundError:
        raise ParamsError(f"{path}: not found; {rerun}") from None
    except (ValueError, ValidationError, yaml.YAMLError, KeyError, TypeError):
        raise ParamsError(f"{path} is damaged or incomplete; {rerun}") from None
    train = params.train
    named = {"model": params.model, "train.epochs": train.epochs, "train.low_res.epochs": train.low_res.epochs,
             "train.precision": train.precision}
    chosen = {"model": choice.model, "train.epochs": choice.epochs, "train.low_res.epochs": choice.low_res_epochs,
              "train.precision": choice.precision}
    for key, value in named.items():
        if value != AUTO and value != chosen[key]:
            raise ParamsError(f"{path} says {key} = {chosen[key]}, params.yaml {value}: it was chosen for other "
                              f"params; {rerun}")
    if params.model == AUTO and choice.model not in params.model_choices():
        raise ParamsError(f"{path} chose {choice.model}, which plan.ladder no longer lists; {rerun}")
    rule = ("plan.ladder's most accurate entry within plan.budget_minutes at this machine's measured speed"
            if params.model == AUTO else "named in params.yaml")
    return params.planned(choice), rule


def _note_hand_edits(path: Path, raw: dict) -> None:
    """One line on stderr when params.yaml was edited by hand after it was composed: this run
    uses the edit, but the next `dvc exp run` recomposes the file from conf/ and drops it. Or, where
    that already happened and git still holds the edit (a committed params.yaml), that this run
    does not use it. An uncommitted edit that `dvc exp run` recomposed away leaves no trace."""
    from cifarlab.conf import hand_edits

    edited = hand_edits(path.read_text(encoding="utf-8"), raw)
    if edited:
        shown = ", ".join(edited[:5]) + (f" and {len(edited) - 5} more" if len(edited) > 5 else "")
        print(f"note: {path}: {shown} edited by hand; used by this run, but a plain `dvc exp run` recomposes "
              f"{path} from conf/ and drops the edit: make it in conf/, pass it as -S, or run "
              "`dvc exp run --no-hydra`", file=sys.stderr)
        return
    text = _committed_text(path)
    try:
        committed = yaml.safe_load(text) if text else None
    except yaml.YAMLError:
        return
    if not isinstance(committed, dict):
        return
    lost = [key for key in hand_edits(text, committed) if key != "some keys" and _at(committed, key) != _at(raw, key)]
    if lost:
        key = lost[0]
        shown = ", ".join(f"{k} = {_at(committed, k)}" for k in lost[:3]) + (" and more" if len(lost) > 3 else "")
        print(f"note: the committed {path} sets {shown} by hand, which this run's {path} does not: `dvc exp run` "
              f"recomposed it from conf/; {set_key(key, str(_at(committed, key)))}", file=sys.stderr)


def _committed_text(path: Path) -> str | None:
    """params.yaml as git's HEAD holds it; None outside git or where it holds none."""
    try:
        shown = subprocess.run(["git", "show", f"HEAD:./{path.name}"], cwd=path.parent, capture_output=True,
                               text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return shown.stdout if shown.returncode == 0 else None


def _at(values: dict, dotted: str) -> object:
    """The value at a dotted key (None where there is none)."""
    for part in dotted.split("."):
        values = values.get(part) if isinstance(values, dict) else None
    return values
