"""Seed sweeps as distributions: `cifarlab seeds` reads `dvc exp show --json`, groups
the experiments that differ only in train.seed and prints each group's test accuracy (and plain
accuracy) as mean +/- sample standard deviation over its n runs. What the plan stage chose
(plan/choice.json: network, epochs, precision) is part of the recipe, so runs of `model: auto` that
trained two networks on two machines are two groups, never one mean. One run per recipe cannot rank
two recipes: another seed alone moves test accuracy by a few tenths of a percent."""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
from collections.abc import Iterator

from cifarlab.core.errors import refuse, run_command

METRICS_FILE = "metrics/evaluate.json"
CHOICE_FILE = "plan/choice.json"  # what trained, where params.yaml left it to the plan stage
SEED_KEY = "train.seed"


def _flatten(mapping: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in mapping.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = json.dumps(value)
    return flat


def runs(shown) -> Iterator[tuple[str, dict, dict]]:
    """(name, flat params, evaluate metrics) of every experiment and commit in `dvc exp show
    --json` output that has test metrics."""
    if isinstance(shown, list):
        for item in shown:
            yield from runs(item)
        return
    if not isinstance(shown, dict):
        return
    data = shown.get("data")
    # the workspace row repeats the last experiment run in it
    if isinstance(data, dict) and "params" in data and shown.get("rev") != "workspace":
        params = data.get("params", {}).get("params.yaml", {}).get("data") or {}
        metrics = (data.get("metrics") or {}).get(METRICS_FILE, {}).get("data")
        choice = (data.get("metrics") or {}).get(CHOICE_FILE, {}).get("data") or {}
        if params and metrics:
            yield (shown.get("name") or data.get("name") or shown.get("rev", "?"),
                   {**_flatten(params), **_flatten(choice)}, metrics)
    for value in shown.values():
        if isinstance(value, (list, dict)) and value is not data:
            yield from runs(value)


def summarise(shown) -> list[dict]:
    """One row per recipe (params without the seed): n, seeds, mean and sd of each accuracy."""
    groups: dict[tuple, list] = {}
    seen = set()
    for name, params, metrics in runs(shown):
        if name in seen:
            continue
        seen.add(name)
        recipe = tuple(sorted((k, v) for k, v in params.items() if k != SEED_KEY))
        groups.setdefault(recipe, []).append((json.loads(params.get(SEED_KEY, "null")), metrics))
    rows = []
    for recipe, members in groups.items():
        row = {"n": len(members), "seeds": sorted(seed for seed, _ in members), "recipe": dict(recipe)}
        for key in ("accuracy", "accuracy_without_tta"):
            values = [m[key] for _, m in members if isinstance(m.get(key), (int, float))]
            if values:
                row[key] = (statistics.mean(values), statistics.stdev(values) if len(values) > 1 else float("nan"))
        rows.append(row)
    return rows


def _differences(rows: list[dict]) -> list[str]:
    """Per row, the params that tell it apart from the other rows (all shown when alone)."""
    keys = set().union(*(row["recipe"] for row in rows))
    varying = sorted(k for k in keys if len({row["recipe"].get(k) for row in rows}) > 1)
    return [", ".join(f"{k}={row['recipe'].get(k)}" for k in varying) or "the only recipe" for row in rows]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="cifarlab seeds", description=__doc__.split("\n\n")[0])
    parser.add_argument("file", nargs="?", help="saved output of `dvc exp show --json` (default: run it here)")
    args = parser.parse_args(argv)
    if args.file:
        try:
            text = open(args.file, encoding="utf-8").read()
        except UnicodeDecodeError:
            refuse(f"{args.file}: not text, so not the JSON of `dvc exp show --json`")
    elif shutil.which("dvc") is None:
        refuse("dvc is not on the PATH: activate the project's environment (README, Setup), or give a file saved "
               "from `dvc exp show --json`")
    else:
        shown = subprocess.run(["dvc", "exp", "show", "--json"], capture_output=True, text=True)
        if shown.returncode:
            refuse(f"`dvc exp show --json` failed: {(shown.stderr.strip().splitlines() or ['?'])[-1]}")
        text = shown.stdout
    try:
        shown = json.loads(text)
    except json.JSONDecodeError as err:
        refuse(f"not the JSON of `dvc exp show --json` ({err})")
    rows = summarise(shown)
    if not rows:
        refuse(f"no experiment with {METRICS_FILE} in the input; run some first")
    for row, label in zip(rows, _differences(rows)):
        parts = [f"{name} {mean:.2f}%" + (f" ± {sd:.2f}" if row["n"] > 1 else "") for name, (mean, sd) in
                 (("accuracy", row.get("accuracy", (float("nan"),) * 2)),
                  ("plain", row.get("accuracy_without_tta", (float("nan"),) * 2)))]
        if row["n"] == 1:
            parts.append("one run: no spread yet (sweep train.seed for one)")
        print(f"{label}: n={row['n']} (seeds {', '.join(map(str, row['seeds']))}): {'; '.join(parts)}")


if __name__ == "__main__":
    sys.exit(run_command(main))
