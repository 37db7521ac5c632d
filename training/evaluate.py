"""Evaluation metrics shared by every model and report.

All metrics take aligned 1-D arrays/Series of predictions and realised targets plus the date of
each row; cross-sectional metrics are computed per date and then averaged over dates.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def _per_date_corr(pred, target, dates, method: str) -> pd.Series:
    frame = pd.DataFrame({"p": np.asarray(pred, float), "y": np.asarray(target, float),
                          "d": np.asarray(dates)}).dropna()
    out = {}
    for d, g in frame.groupby("d", sort=True):
        if len(g) < 2 or g["p"].nunique() < 2 or g["y"].nunique() < 2:
            continue
        out[d] = g["p"].corr(g["y"], method=method)
    return pd.Series(out, dtype=float)


def ic(pred, target, dates) -> float:
    """Mean over dates of the cross-sectional Pearson correlation (NaN if no date has 2+ rows)."""
    s = _per_date_corr(pred, target, dates, "pearson")
    return float(s.mean()) if len(s) else float("nan")


def rank_ic(pred, target, dates) -> float:
    """Mean over dates of the cross-sectional Spearman correlation."""
    s = _per_date_corr(pred, target, dates, "spearman")
    return float(s.mean()) if len(s) else float("nan")


def rmse(pred, target) -> float:
    """Root mean squared error over rows where both are finite."""
    p, y = np.asarray(pred, float), np.asarray(target, float)
    m = np.isfinite(p) & np.isfinite(y)
    return float(np.sqrt(np.mean((p[m] - y[m]) ** 2))) if m.any() else float("nan")
