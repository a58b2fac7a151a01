"""The data path: sources to the prepared arrays (download), channel stats, augmentations and
the two batch paths that feed training and scoring."""
