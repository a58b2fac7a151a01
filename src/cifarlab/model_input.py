"""How any image becomes what the model sees: one rule for the data sources, predict and the
ONNX card, recorded in every checkpoint, so a model is only ever asked about images prepared the
way its training images were."""
from __future__ import annotations

import numpy as np
from PIL import Image

# What the rule does, in words: stored in the checkpoint and the ONNX card, and compared on loading
PREPROCESSING = "upright 8-bit RGB; its centre square, resized to the input size (bilinear, antialiased)"


def square_input(img: Image.Image, size: int) -> np.ndarray:
    """The image's centre square resized to size x size, as uint8 (size, size, 3). CIFAR-10's
    images are square crops that the object fills, so a photo keeps its proportions rather than
    being squashed. Cropping before resizing bounds the work by the output, whatever the aspect
    ratio: a strip of a million by one pixel costs what a square does."""
    if img.size != (size, size):
        side = min(img.size)
        left, top = (img.width - side) // 2, (img.height - side) // 2
        img = img.crop((left, top, left + side, top + side)).resize((size, size), Image.BILINEAR)
    return np.asarray(img, dtype=np.uint8)
