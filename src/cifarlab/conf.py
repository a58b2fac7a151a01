"""params.yaml from conf/: the project's defaults, a model's own defaults and the recipes live in
conf/ as Hydra config groups, which `dvc exp run -S` composes into params.yaml (DVC's Hydra
support, `hydra.enabled` in .dvc/config). This composes them the same way without DVC, for the
tests (which start from the project's defaults, whatever params.yaml a user committed) and for
`cifarlab conf`, which rewrites the committed params.yaml after an edit to conf/."""
from __future__ import annotations

import argparse
import difflib
import hashlib
import json
import re
import shlex
import sys
from pathlib import Path

import yaml

from cifarlab.core.errors import UserError, run_command
from cifarlab.core.io import check_output, write_text

SHIPPED_CONF = Path(__file__).resolve().parents[2] / "conf"


def project_conf() -> Path:
    """The conf/ of the project run from (as DVC composes it for `dvc exp run`), else the one
    shipped beside this package: a clone that shares another's environment composes its own."""
    here = Path("conf")
    return here if (here / "config.yaml").is_file() else SHIPPED_CONF

HEADER = """\
# Generated from conf/ (edit conf/config.yaml, where every key is explained, or conf/model/ and
# conf/recipe/; then run `cifarlab conf --out params.yaml`). Every `dvc exp run`, with
# or without -S, rewrites this file from conf/ (and its -S changes), so a hand edit here is lost
# by the next `dvc exp run`; `dvc repro` and `dvc exp run --no-hydra` run this file as it is.
"""
COMPOSED = "# composed with overrides: "  # then the overrides as one shell-quoted line, and the values' digest


def values_digest(values: dict) -> str:
    """A short digest of the values (not of their layout: reordering or a comment is no edit)."""
    return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:16]


def compose(overrides: list[str] = (), conf: Path | None = None) -> dict:
    """conf/config.yaml with Hydra overrides applied (`model=s9net`, `train.epochs=3`), as DVC
    composes it for `dvc exp run -S`, as a plain mapping."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(str((conf or project_conf()).resolve()), version_base=None):
        cfg = hydra_compose(config_name="config", overrides=list(overrides))
    return OmegaConf.to_container(cfg, resolve=True)


def params_text(overrides: list[str] = ()) -> str:
    """params.yaml's text for the overrides: the header, the overrides and the digest of what they
    compose (so a later hand edit can be told apart), then the composed values."""
    values = compose(overrides)
    stamp = f"{COMPOSED}{shlex.join(overrides) or '(none)'}; values {values_digest(values)}\n"
    return HEADER + stamp + "\n" + yaml.safe_dump(values, sort_keys=False, width=100)


def hand_edits(text: str, values: dict) -> list[str]:
    """The dotted keys of `values` (params.yaml's text, loaded) that differ from what its own
    COMPOSED line composes: the edits made by hand since, which the next `dvc exp run` drops.
    None can be told for a file without that line (one DVC composed, or written by hand)."""
    line = next((line for line in text.splitlines()[:8] if line.startswith(COMPOSED)), None)
    if line is None:
        return []
    overrides, _, digest = line[len(COMPOSED):].rpartition("; values ")
    if digest == values_digest(values):
        return []
    try:
        composed = compose([] if overrides == "(none)" else shlex.split(overrides))
    except Exception:  # conf/ changed since, and no longer composes them: an edit, but of which keys is unknown
        return ["some keys"]
    return sorted(_differences(composed, values))


def _differences(before: object, after: object, prefix: str = "") -> set[str]:
    if isinstance(before, dict) and isinstance(after, dict):
        return set().union(*(_differences(before.get(key), after.get(key), f"{prefix}{key}.")
                             for key in before.keys() | after.keys()))
    return set() if before == after else {prefix.rstrip(".")}


def _dotted_keys(values: dict, prefix: str = "") -> list[str]:
    return [key for name, value in values.items() for key in
            (_dotted_keys(value, f"{prefix}{name}.") if isinstance(value, dict) else [f"{prefix}{name}"])]


def composed_text(overrides: list[str]) -> str:
    """params_text, with what Hydra or YAML says of a bad override or a broken conf/ in one line."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException
    from yaml import YAMLError

    try:
        return params_text(overrides)
    except (HydraException, OmegaConfBaseException, YAMLError) as err:
        said = " ".join(str(err).split("Config search path:")[0].split())  # Hydra's run over several lines
        unknown = re.match(r"Could not override '([^']+)'", said)
        if unknown:
            keys = _dotted_keys(compose())
            close = difflib.get_close_matches(unknown[1], keys, n=1)
            said = f"no key {unknown[1]!r} in conf/" + (f"; did you mean {close[0]!r}?" if close else "")
        raise UserError(f"conf: {said[:400]}") from None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="cifarlab conf", description=__doc__.split("\n\n")[0])
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, as `dvc exp run -S` takes them")
    parser.add_argument("--out", type=Path, help="write this file, whole or not at all (default: print)")
    args = parser.parse_args(argv)
    if args.out is not None:
        check_output("--out", args.out)  # before any work; a refusal is run_command's one line
    text = composed_text(args.overrides)  # composed first: a failure leaves --out as it was
    if args.out is None:
        print(text, end="")
    else:
        write_text(args.out, text)


if __name__ == "__main__":
    sys.exit(run_command(main))
