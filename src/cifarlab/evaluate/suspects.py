"""Mistakes that may be the label's rather than the model's. Confident learning (Northcutt, Jiang
and Chuang, "Confident Learning: Estimating Uncertainty in Dataset Labels", JAIR 2021) estimates
from out-of-sample probabilities how often each class is labelled as each other class, and flags
the images whose given label the model finds least likely, as many per pair as that estimate says;
cleanlab implements it. The test images are out of sample: no training step saw them."""
from __future__ import annotations

import warnings

import numpy as np
import torch
import torch.nn.functional as F
from cleanlab.filter import find_label_issues


def suspect_labels(logits: torch.Tensor, labels: torch.Tensor) -> np.ndarray:
    """Per image, whether it is misclassified and confident learning finds its label suspect."""
    probs = F.softmax(logits.float(), dim=1).numpy()
    given = labels.numpy()
    if probs.shape[1] < 2:
        return np.zeros(len(given), dtype=bool)
    with warnings.catch_warnings():  # classes too small to estimate are flagged less, as cleanlab warns
        warnings.simplefilter("ignore")
        issues = find_label_issues(given, probs, filter_by="prune_by_noise_rate", n_jobs=1)
    return issues & (probs.argmax(axis=1) != given)
