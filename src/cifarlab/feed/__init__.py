"""What feeds a model the prepared images, in training and in scoring: augmentations, the two batch
paths (CPU workers or on-device), the device and precision, and the scoring loop."""
