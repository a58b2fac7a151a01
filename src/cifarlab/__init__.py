"""cifarlab: train CIFAR-10 classifiers with a reproducible DVC pipeline and explain their mistakes."""
import importlib.abc
import importlib.util
import os
import sys

# albumentations checks PyPI for a newer release at import; set once here, before any import of it.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")


class _VerbsMoved(importlib.abc.MetaPathFinder):
    """`python -m cifarlab.predict` and the other verbs, as scripts were written before the verbs
    moved to cifarlab.commands: a name found nowhere else that names a module there is that module."""

    def find_spec(self, fullname, path=None, target=None):
        parent, _, verb = fullname.rpartition(".")
        if parent != __name__ or verb == "commands":
            return None
        moved = importlib.util.find_spec(f"{__name__}.commands.{verb}")
        return None if moved is None else importlib.util.spec_from_file_location(fullname, moved.origin)


sys.meta_path.append(_VerbsMoved())
