"""Choosing which mistakes to show, and how to caption them."""
from __future__ import annotations

import pandas as pd


def most_confident_mistakes(predictions: pd.DataFrame, count: int) -> pd.DataFrame:
    """The `count` wrong predictions with the highest confidence (ties: lower index first)."""
    wrong = predictions[predictions["actual"] != predictions["predicted"]]
    return wrong.sort_values(["confidence", "index"], ascending=[False, True]).head(count)


def caption(row) -> str:
    return f"{row.predicted} ({row.confidence:.2f}) / {row.actual}"
