"""params.yaml from conf/: the project's defaults, a model's own defaults and the recipes live in
conf/ as Hydra config groups, which `dvc exp run -S` composes into params.yaml (DVC's Hydra
support, `hydra.enabled` in .dvc/config). This composes them the same way without DVC, for the
tests (which start from the project's defaults, whatever params.yaml a user committed) and for
`python -m cifarlab.conf`, which rewrites the committed params.yaml after an edit to conf/."""
from __future__ import annotations

import argparse
from pathlib import Path

import yaml

CONF = Path(__file__).resolve().parents[2] / "conf"

HEADER = """\
# Generated from conf/ (edit conf/config.yaml, where every key is explained, or conf/model/ and
# conf/recipe/; then run `python -m cifarlab.conf > params.yaml`). `dvc exp run -S key=value`
# rewrites this file from conf/ with your changes, so it always holds every value that ran;
# `dvc repro` runs it as it is.
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
    print(params_text(parser.parse_args(argv).overrides), end="")


if __name__ == "__main__":
    main()
