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

As a `training.model.Model` it is a stacker: its dataset's features are the members'
out-of-sample predictions, one column per member (`stack_members` builds one), so it has the
same ``fit(dataset)`` / ``predict(dataset, segment)`` as every other candidate.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from training.bundle import write_json_atomic
from training.evaluate import rank_ic
from training.model import TEST, TRAIN, Dataset, keyed

ENSEMBLE_FILE = "ensemble.json"

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

    name = "regime_ensemble"

    def fit(self, dataset: Dataset) -> RegimeEnsemble:
        """Fit the threshold and weights on the ``train`` rows of ``dataset`` (members'
        predictions as columns, `stack_members`; its ``target`` the label)."""
        missing = [m for m in self.members if m not in dataset.frame]
        if missing:
            raise KeyError(f"RegimeEnsemble.fit: no predictions for members {missing}")
        if dataset.target is None:
            raise ValueError("RegimeEnsemble.fit: the dataset names no target column")
        frame, ts_col = dataset.rows(TRAIN), "ts"
        vol = frame["mkt_vol_20"].to_numpy(float)
        self.vol_threshold_ = float(np.nanmedian(vol)) if np.isfinite(vol).any() else 0.0
        y, d = frame[dataset.target].to_numpy(float), frame[ts_col].to_numpy()
        z = {m: cross_sectional_z(frame[m].to_numpy(float), d) for m in self.members}
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

    def predict(self, dataset: Dataset, segment: str | None = TEST) -> pd.Series:
        """Blended score of ``segment``'s rows, indexed by (ts, ticker) in row order."""
        if self.vol_threshold_ is None:
            raise RuntimeError("RegimeEnsemble.predict called before fit")
        frame = dataset.rows(segment)
        d = frame["ts"].to_numpy()
        reg = regime_labels(frame, self.vol_threshold_)
        out = np.zeros(len(frame))
        for m in self.members:
            z = cross_sectional_z(frame[m].to_numpy(float), d)
            w = np.array([self.weights_[r][m] for r in reg]) if len(reg) else np.zeros(0)
            out += w * z
        return keyed(frame, out, "regime_ensemble")

    def export(self, out_dir: Path) -> Path:
        """Write the fitted blend (members, volatility threshold, weights per regime) to
        ``out_dir/ensemble.json``. Not a serving bundle: serving runs each member's own."""
        if self.vol_threshold_ is None:
            raise RuntimeError("RegimeEnsemble.export called before fit")
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        write_json_atomic(out / ENSEMBLE_FILE, {
            "kind": "regime_ensemble", "members": self.members, "min_dates": self.min_dates,
            "vol_threshold": self.vol_threshold_, "weights": self.weights_})
        return out


def stack_members(frame: pd.DataFrame, preds: Mapping[str, pd.Series], target: str | None = None,
                  **segments: np.ndarray | None) -> Dataset:
    """The ensemble's dataset: ``frame`` plus one column per member holding its predictions
    on those rows (one value per row, in row order, as a member's ``predict`` returns them)."""
    cols = {}
    for name, p in preds.items():
        if len(p) != len(frame):
            raise ValueError(f"stack_members: member {name!r} has {len(p)} predictions for "
                             f"{len(frame)} rows")
        cols[name] = np.asarray(p, float)
    return Dataset.of(frame.assign(**cols), tuple(preds), target, **segments)
