"""Regime-aware ensemble: member forecasts blended with weights that depend on the market regime.

Regime of a row (known at its ``ts``; both inputs are served features, so no look-ahead):

- trend: ``mkt_trend_200 >= 0`` (S&P 500 at or above its 200-day SMA) -> "up", else "down";
- volatility: ``mkt_vol_20 >= threshold`` -> "hivol", else "lovol", where ``threshold`` is the
  median ``mkt_vol_20`` of the rows the ensemble is fitted on.

That gives four regimes (``up-lovol``, ``up-hivol``, ``down-lovol``, ``down-hivol``). Members
speak different units (a lambdarank score is not a return), so each member's forecast is first
standardised **within its date** (cross-sectional z-score); the ensemble output is the weighted
sum of those z-scores — a ranking score, not a return.

Weights per regime: each member's mean per-date RankIC on the fitting rows of that regime,
clipped at 0 and normalised to sum to 1. A regime with fewer than ``min_dates`` dates, or where
no member has a positive RankIC, falls back to the weights fitted on all rows (and those to
equal weights). Fit it on rows the members were **not** trained on (the walk-forward fold's
validation segment), never on the rows it is evaluated on.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from training.evaluate import rank_ic

REGIMES = ("up-lovol", "up-hivol", "down-lovol", "down-hivol")


def regime_labels(frame: pd.DataFrame, vol_threshold: float,
                  trend_col: str = "mkt_trend_200", vol_col: str = "mkt_vol_20") -> np.ndarray:
    """(n_rows,) regime name of each row (see module docstring).

    A missing trend counts as "up" and a missing volatility as "lovol" (the first 200 days
    of an index history have no 200-day SMA)."""
    trend = frame[trend_col].to_numpy(float)
    vol = frame[vol_col].to_numpy(float)
    up = np.where(np.isnan(trend), True, trend >= 0)
    hi = np.where(np.isnan(vol), False, vol >= vol_threshold)
    return np.where(up, np.where(hi, "up-hivol", "up-lovol"),
                    np.where(hi, "down-hivol", "down-lovol"))


def cross_sectional_z(pred, dates) -> np.ndarray:
    """Per-date z-score of ``pred``; 0 where a date has no spread (or one row)."""
    s = pd.Series(np.asarray(pred, float))
    g = s.groupby(np.asarray(dates))
    mu, sd = g.transform("mean"), g.transform("std", ddof=0)
    z = (s - mu) / sd.where(sd > 0)
    return z.fillna(0.0).to_numpy()


def _weights(members: Mapping[str, np.ndarray], y: np.ndarray, d: np.ndarray) -> dict | None:
    score = {}
    for name, p in members.items():
        r = rank_ic(p, y, d)
        score[name] = max(r, 0.0) if np.isfinite(r) else 0.0
    total = sum(score.values())
    return None if total <= 0 else {k: v / total for k, v in score.items()}


class RegimeEnsemble:
    """Blend member forecasts with per-regime weights (see module docstring).

    Attributes:
        members: member names, in order.
        min_dates: fewest dates a regime needs to get its own weights.
        vol_threshold_: fitted ``mkt_vol_20`` split.
        weights_: regime -> member -> weight (every regime present after `fit`).
    """

    def __init__(self, members, min_dates: int = 20) -> None:
        self.members = list(members)
        self.min_dates = int(min_dates)
        self.vol_threshold_: float | None = None
        self.weights_: dict[str, dict[str, float]] = {}

    def fit(self, frame: pd.DataFrame, preds: Mapping[str, pd.Series], target_col: str,
            ts_col: str = "ts") -> RegimeEnsemble:
        """Fit the threshold and weights on ``frame`` (with each member's ``preds`` on it)."""
        missing = [m for m in self.members if m not in preds]
        if missing:
            raise KeyError(f"RegimeEnsemble.fit: no predictions for members {missing}")
        vol = frame["mkt_vol_20"].to_numpy(float)
        self.vol_threshold_ = float(np.nanmedian(vol)) if np.isfinite(vol).any() else 0.0
        y, d = frame[target_col].to_numpy(float), frame[ts_col].to_numpy()
        z = {m: cross_sectional_z(preds[m].reindex(frame.index), d) for m in self.members}
        overall = _weights(z, y, d) or {m: 1.0 / len(self.members) for m in self.members}
        reg = regime_labels(frame, self.vol_threshold_)
        self.weights_ = {}
        for r in REGIMES:
            m = reg == r
            w = None
            if pd.Series(d[m]).nunique() >= self.min_dates:
                w = _weights({k: v[m] for k, v in z.items()}, y[m], d[m])
            self.weights_[r] = w or dict(overall)
        return self

    def predict(self, frame: pd.DataFrame, preds: Mapping[str, pd.Series],
                ts_col: str = "ts") -> pd.Series:
        """Blended score aligned to ``frame.index``."""
        if self.vol_threshold_ is None:
            raise RuntimeError("RegimeEnsemble.predict called before fit")
        d = frame[ts_col].to_numpy()
        reg = regime_labels(frame, self.vol_threshold_)
        out = np.zeros(len(frame))
        for m in self.members:
            z = cross_sectional_z(preds[m].reindex(frame.index), d)
            w = np.array([self.weights_[r][m] for r in reg]) if len(reg) else np.zeros(0)
            out += w * z
        return pd.Series(out, index=frame.index, name="regime_ensemble")
