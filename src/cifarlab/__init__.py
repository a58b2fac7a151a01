"""cifarlab: train CIFAR-10 classifiers with a reproducible DVC pipeline and explain their mistakes."""
import os

# albumentations checks PyPI for a newer release at import; set once here, before any import of it.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
