"""Every network by the name params.yaml's `model` gives it: the zoo's (one small file per family
in this folder) and your own (one file per network in the project's nets/ folder, each with a
class `Net`). This module only names them, without importing torch, so that every stage checks
params.yaml in milliseconds; cifarlab.models.registry builds them. What cifarlab needs to know
about a network (the layers GradCAM may explain, whether it trains at any image size) is on its
class, or found by a rule where the class says nothing (registry)."""
from __future__ import annotations

import hashlib
from pathlib import Path

from cifarlab.core.errors import UserError

ZOO = {  # name: "module:class" in this folder
    "airbench93": "airbench:AirBench93",
    "airbench94": "airbench:AirBench94",
    "custom_resnet": "custom_resnet:CustomResNet",
    "resnet18": "resnet:ResNet18BN",
    "resnet18_ln": "resnet18_ln:ResNet18LN",
    "s9net": "s9net:S9Net",
    "tiny": "tiny:Tiny",
}
NETS = Path("nets")  # your own networks, beside dvc.yaml: nets/<name>.py


def own_networks() -> dict[str, Path]:
    """The networks in nets/ by name: each <name>.py whose name is a Python identifier (a file
    starting with _ is a helper the networks import, not a network)."""
    if not NETS.is_dir():
        return {}
    return {path.stem: path for path in sorted(NETS.glob("*.py"))
            if path.stem.isidentifier() and not path.stem.startswith("_")}


def model_names() -> list[str]:
    """Every name `model` may take: the zoo's, then nets/'s."""
    return [*ZOO, *(name for name in own_networks() if name not in ZOO)]


def source_file(name: str) -> Path | None:
    """Your network's file (nets/<name>.py); None for the zoo's. A file of nets/ named like a zoo
    network is refused: which of the two trains would otherwise be a guess."""
    own = own_networks().get(name)
    if own is not None and name in ZOO:
        raise UserError(f"{own}: {name} is the name of a network cifarlab ships; rename the file (e.g. "
                        f"nets/my_{name}.py) and train it with -S model=my_{name}")
    return own


def source_digest(name: str) -> str | None:
    """SHA-256 of your network's file: what its training and its checkpoint were made from."""
    path = source_file(name)
    return None if path is None else hashlib.sha256(path.read_bytes()).hexdigest()
