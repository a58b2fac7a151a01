"""The plan's choice: the concrete runs params.yaml allows (its own values where it names them,
plan.ladder's where it says auto), each priced at this machine's measured speed in each allowed
precision, and the first in ladder order that fits plan.budget_minutes, in its faster precision.
A model or epochs the user named are never replaced: they are the only candidate, trained with
a note when they exceed the budget."""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from cifarlab.config import AUTO, Choice, Params, ParamsError, Rung
from cifarlab.core.errors import set_key
from cifarlab.feed.device import native_bf16, resolve_precision
from cifarlab.plan.cost import Cost, DataSizes, cost
from cifarlab.plan.speeds import Speed, speed
from cifarlab.train.clock import duration


@dataclass(frozen=True)
class Candidate:
    params: Params  # concrete: named model, epochs, low-res epochs and precision
    rung: Rung | None  # the ladder entry it comes from; None: params.yaml names all of it
    cost: Cost
    measured: bool  # its speed was measured in this run (False: from the cache)

    @property
    def choice(self) -> Choice:
        train = self.params.train
        return Choice(model=self.params.model, epochs=train.epochs, low_res_epochs=train.low_res.epochs,
                      precision=train.precision)


@dataclass
class Priced:
    """The candidates priced so far, and the plan's own cost: its start-up and measuring each
    distinct recipe once, as long as that took the first time (so the figure is the same on every
    run of one machine, and a first run on a new machine is priced in full)."""
    startup: float
    candidates: list[Candidate]
    probes: dict  # (model, precision, low-res) -> seconds its measurement took

    @property
    def plan_seconds(self) -> float:
        return self.startup + sum(self.probes.values())


def precisions(requested: str, device: torch.device) -> list[str]:
    """The precisions train.precision allows here: auto measures bf16 against fp32 where a CPU
    runs both natively (bf16 is the slower one on some CPUs); a GPU trains in bf16, else fp16."""
    if requested != AUTO:
        return [resolve_precision(requested, device)]
    if device.type == "cuda":
        return [resolve_precision(AUTO, device)]  # nothing to measure
    return ["bf16", "fp32"] if native_bf16(device) else ["fp32"]


def options(params: Params) -> list[tuple[tuple[str, int, int], Rung | None]]:
    """The runs params.yaml allows, as (model, epochs, low-res epochs), in ladder order: what it
    names is kept, what it leaves to auto comes from each ladder entry (low-res epochs auto: the
    entry's where its epochs are taken too, else 0)."""
    cfg = params.train
    if params.model != AUTO and cfg.epochs != AUTO:
        low = 0 if cfg.low_res.epochs == AUTO else cfg.low_res.epochs
        return [((params.model, cfg.epochs, low), None)]
    found, seen = [], set()
    for rung in params.rungs():
        epochs = rung.epochs if cfg.epochs == AUTO else cfg.epochs
        low = (rung.low_res_epochs if cfg.epochs == AUTO else 0) if cfg.low_res.epochs == AUTO else cfg.low_res.epochs
        if (rung.model, epochs, low) not in seen and low < epochs:
            seen.add((rung.model, epochs, low))
            found.append(((rung.model, epochs, low), rung))
    if not found:
        raise ParamsError(f"params.yaml: train.low_res.epochs = {cfg.low_res.epochs} is not fewer than the epochs of "
                          f"any plan.ladder entry; {set_key('train.low_res.epochs', 'auto')} or 0")
    return found


SpeedOf = Callable[[Params, str, torch.device, bool, int], tuple[Speed, bool]]


def candidates(params: Params, sizes: DataSizes, device: torch.device, startup: float, speed_of: SpeedOf = speed,
               stop_at_fit: bool = True) -> Priced:
    """Each allowed run in its faster precision, priced here, in ladder order; with `stop_at_fit`,
    up to the first that fits the budget after the plan's own cost (the later ones need not be
    measured). `startup`: the train stage's start-up here, which the plan's own resembles."""
    budget = budget_seconds(params)
    priced = Priced(startup, [], {})
    for (model, epochs, low), rung in options(params):
        best = None
        for precision in precisions(params.train.precision, device):
            run = params.planned(Choice(model=model, epochs=epochs, low_res_epochs=low, precision=precision))
            measured, fresh = speed_of(run, precision, device, low > 0, sizes.classes)
            priced.probes[(model, precision, low > 0)] = measured.measure_seconds
            found = Candidate(run, rung, cost(run, measured, sizes, startup), fresh)
            best = found if best is None or found.cost.total < best.cost.total else best
        priced.candidates.append(best)
        if stop_at_fit and priced.plan_seconds + best.cost.total <= budget:
            break
    return priced


def fastest_precision(params: Params, device: torch.device, num_classes: int, speed_of: SpeedOf = speed) -> str:
    """The precision train.precision allows here whose training step is quickest for data of
    `num_classes` (for the tools that time one model's step: the benchmark, the profiler)."""
    allowed = precisions(params.train.precision, device)
    if len(allowed) == 1:
        return allowed[0]  # nothing to measure
    return min(allowed, key=lambda precision: speed_of(params, precision, device, False, num_classes)[0].step_seconds)


def budget_seconds(params: Params) -> float:
    return params.plan.budget_minutes * 60 or math.inf


def pick(priced: Priced, params: Params) -> tuple[Candidate, str]:
    """The first candidate that fits the budget after the plan's own cost, else the quickest; with
    the line that says what it is, what it will cost and why it was chosen."""
    budget, elapsed, priced = budget_seconds(params), priced.plan_seconds, priced.candidates
    fitting = [c for c in priced if elapsed + c.cost.total <= budget]
    chosen = fitting[0] if fitting else min(priced, key=lambda c: c.cost.total)
    train = chosen.params.train
    low = f", the first {train.low_res.epochs} at {train.low_res.size} px" if train.low_res.epochs else ""
    what = f"{chosen.params.model} for {train.epochs} epoch{'s' if train.epochs > 1 else ''}{low} in {train.precision}"
    expected = (f"expected {duration(elapsed + chosen.cost.total)} of `dvc repro` here "
                f"(the train stage {duration(chosen.cost.startup + chosen.cost.train)})")
    limit = f"plan.budget_minutes = {params.plan.budget_minutes:g}"
    if chosen.rung is None:
        why = "as params.yaml names it" + ("" if fitting or budget == math.inf else
                                          f"; over the budget ({limit}): name a smaller model or fewer epochs, "
                                          "or raise it (-S plan.budget_minutes=...)")
    else:
        rank = priced.index(chosen) + 1
        why = (f"plan.ladder's entry {params.plan.ladder.index(chosen.rung) + 1} ({chosen.rung.val_acc:g}% on "
               f"validation), " + (f"the most accurate that fits {limit}" if fitting else
                                   f"the quickest: none fits {limit} here"))
        if rank > 1:
            why += f"; {rank - 1} more accurate {'entry does' if rank == 2 else 'entries do'} not"
    return chosen, f"plan: {what}, {expected}, {why}"


def table(priced: Priced, budget: float) -> str:
    """The candidates priced, one row each, as the plan and `bench --estimate` print them."""
    elapsed = priced.plan_seconds
    lines = [f"| model | epochs | precision | train stage | rest of `dvc repro` | whole `dvc repro` (plan "
             f"{duration(elapsed)} included) | fits |", "|---|---:|---|---:|---:|---:|---|"]
    for c in priced.candidates:
        train = c.params.train
        low = f" ({train.low_res.epochs} at {train.low_res.size} px)" if train.low_res.epochs else ""
        lines.append(f"| {c.params.model} | {train.epochs}{low} | {train.precision} | "
                     f"{duration(c.cost.startup + c.cost.train)} | {duration(c.cost.rest)} | "
                     f"{duration(elapsed + c.cost.total)} | {'yes' if elapsed + c.cost.total <= budget else 'no'} |")
    return "\n".join(lines)
