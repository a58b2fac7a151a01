"""params.yaml from conf/: the project's defaults, a model's own defaults and the recipes live in
conf/ as Hydra config groups, which `dvc exp run -S` composes into params.yaml (DVC's Hydra
support, `hydra.enabled` in .dvc/config). This composes them the same way without DVC, for the
tests (which start from the project's defaults, whatever params.yaml a user committed) and for
`python -m cifarlab.conf`, which rewrites the committed params.yaml after an edit to conf/."""
from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from cifarlab.core.io import write_text

CONF = Path(__file__).resolve().parents[2] / "conf"

HEADER = """\
# Generated from conf/ (edit conf/config.yaml, where every key is explained, or conf/model/ and
# conf/recipe/; then run `python -m cifarlab.conf --out params.yaml`). Every `dvc exp run`, with
# or without -S, rewrites this file from conf/ (and its -S changes), so a hand edit here is lost
# by the next `dvc exp run`; only `dvc repro` runs this file as it is.
"""


def compose(overrides: list[str] = (), conf: Path = CONF) -> dict:
    """conf/config.yaml with Hydra overrides applied (`model=s9net`, `train.epochs=3`), as DVC
    composes it for `dvc exp run -S`, as a plain mapping."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(str(conf.resolve()), version_base=None):
        cfg = hydra_compose(config_name="config", overrides=list(overrides))
    return OmegaConf.to_container(cfg, resolve=True)


def params_text(overrides: list[str] = ()) -> str:
    """params.yaml's text for the overrides: the header, then the composed values."""
    return HEADER + "\n" + yaml.safe_dump(compose(overrides), sort_keys=False, width=100)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m cifarlab.conf", description=__doc__.split("\n\n")[0])
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, as `dvc exp run -S` takes them")
    parser.add_argument("--out", type=Path, help="write this file, whole or not at all (default: print)")
    args = parser.parse_args(argv)
    text = params_text(args.overrides)  # composed first: a failure leaves --out as it was
    if args.out is None:
        print(text, end="")
    else:
        write_text(args.out, text)


if __name__ == "__main__":
    main()
