"""Choosing which misclassified test images to show, reproducibly."""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

TITLES = {"confidence": "most confident mistakes", "index": "first mistakes by index",
          "random": "random mistakes", "per_class": "mistakes, class by class"}


def choose_misclassified(predictions: pd.DataFrame, count: int, order: str = "confidence",
                         seed: int = 0) -> pd.DataFrame:
    """Up to `count` wrong predictions, in one of ORDERS:
    confidence — most confident mistakes first (ties: lower index first);
    index      — the first ones by test-set index;
    random     — a seeded random sample, shown by index;
    per_class  — round robin over the actual classes, most confident first within each."""
    wrong = predictions[predictions["actual"] != predictions["predicted"]]
    by_confidence = wrong.sort_values(["confidence", "index"], ascending=[False, True])
    if order == "confidence":
        return by_confidence.head(count)
    if order == "index":
        return wrong.sort_values("index").head(count)
    if order == "random":
        return wrong.sample(n=min(count, len(wrong)), random_state=seed).sort_values("index")
    rank = by_confidence.groupby("actual_id").cumcount()
    return by_confidence.assign(_rank=rank).sort_values(["_rank", "actual_id"]).drop(columns="_rank").head(count)
