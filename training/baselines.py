"""Naive baselines every model is reported beside, built from the panel's own past only.

A prediction at ``ts`` uses closes at or before ``ts`` (never the label). Columns produced by
`baseline_predictions` for horizon ``h``:

- ``zero``: random walk, predicts a 0 return. Correlation metrics are NaN (undefined for a
  constant), its hit rate counts only exactly-zero realised returns, MCC is 0.
- ``momentum``: the past ``h``-day log return (trend continues).
- ``reversal_1d`` / ``reversal_5d``: minus the past 1- / 5-day log return (short-term
  reversal).
- ``always_up``: a constant positive drift ``up_per_day * h``; correlations NaN, hit rate =
  share of up moves, MCC 0.

`fit_linear_baseline` adds the "linear" baseline: a ridge regression on given feature columns
fitted on the training rows only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

# ~7.5% a year: a long-run equity drift, the "market goes up" prior of an always-long investor.
DEFAULT_UP_PER_DAY = 0.0003

BASELINE_NAMES = ("zero", "momentum", "reversal_1d", "reversal_5d", "always_up")


def past_log_return(
    frame: pd.DataFrame,
    lookback: int,
    *,
    price_col: str = "close",
    ts_col: str = "ts",
    ticker_col: str = "ticker",
) -> pd.Series:
    """``log(close_t / close_{t-lookback})`` per ticker, counted in the ticker's rows.

    Args:
        frame: long panel with a price column; any row order.
        lookback: trading days (rows of the ticker).

    Returns:
        Series aligned to ``frame.index``; NaN for the first ``lookback`` rows of each ticker.
    """
    if lookback < 1:
        raise ValueError(f"lookback must be >= 1, got {lookback}")
    tmp = pd.DataFrame(
        {
            "k": frame[ticker_col].to_numpy(),
            "ts": pd.to_datetime(frame[ts_col]).reset_index(drop=True),
            "lp": np.log(np.asarray(frame[price_col], float)),
        }
    )
    tmp = tmp.sort_values(["k", "ts"], kind="stable")
    r = tmp["lp"] - tmp.groupby("k", sort=False)["lp"].shift(lookback)
    return pd.Series(r.sort_index().to_numpy(), index=frame.index, name=f"past_ret_{lookback}d")


def baseline_predictions(
    frame: pd.DataFrame,
    horizon: int,
    *,
    price_col: str | None = "close",
    past_return_cols: Mapping[int, str] | None = None,
    up_per_day: float = DEFAULT_UP_PER_DAY,
    ts_col: str = "ts",
    ticker_col: str = "ticker",
) -> pd.DataFrame:
    """All baseline prediction columns (`BASELINE_NAMES`) for label horizon ``horizon``.

    Past returns come from ``past_return_cols`` (lookback in days -> existing column of past
    log returns, e.g. ``{1: "ret_1d_past", 5: ..., 20: ...}``) where given, else from
    ``price_col``.

    Args:
        frame: long panel.
        horizon: label horizon in trading days; the momentum lookback.
        price_col: close (or adjusted close) column; None to rely on ``past_return_cols``.
        past_return_cols: optional precomputed past-return columns by lookback.
        up_per_day: drift of the always-up prediction per trading day.

    Returns:
        DataFrame aligned to ``frame.index`` with one column per baseline.
    """
    cols = dict(past_return_cols or {})

    def past(lookback: int) -> pd.Series:
        if lookback in cols:
            return frame[cols[lookback]].astype(float)
        if price_col is None or price_col not in frame:
            raise KeyError(
                f"baseline needs a past {lookback}-day return: give "
                f"past_return_cols={{{lookback}: <column>}} or a price column "
                f"(price_col={price_col!r} not in frame)"
            )
        return past_log_return(
            frame, lookback, price_col=price_col, ts_col=ts_col, ticker_col=ticker_col
        )

    n = len(frame)
    return pd.DataFrame(
        {
            "zero": np.zeros(n),
            "momentum": past(horizon).to_numpy(),
            "reversal_1d": -past(1).to_numpy(),
            "reversal_5d": -past(5).to_numpy(),
            "always_up": np.full(n, up_per_day * horizon),
        },
        index=frame.index,
    )


class LinearBaseline:
    """Ridge regression on standardised features; mean/std and weights from train rows only.

    Attributes:
        feature_cols: inputs, in order.
        alpha: ridge penalty on standardised weights.
    """

    def __init__(self, feature_cols: Sequence[str], alpha: float = 1.0) -> None:
        self.feature_cols = list(feature_cols)
        self.alpha = float(alpha)
        self.mean_: np.ndarray | None = None
        self.scale_: np.ndarray | None = None
        self.coef_: np.ndarray | None = None
        self.intercept_: float = 0.0

    def _x(self, frame: pd.DataFrame) -> np.ndarray:
        missing = [c for c in self.feature_cols if c not in frame]
        if missing:
            raise KeyError(f"LinearBaseline: frame lacks feature columns {missing}")
        return frame[self.feature_cols].to_numpy(float)

    def fit(self, frame: pd.DataFrame, target_col: str) -> LinearBaseline:
        """Fit on rows where every feature and the target are finite."""
        x, y = self._x(frame), frame[target_col].to_numpy(float)
        m = np.isfinite(x).all(axis=1) & np.isfinite(y)
        if m.sum() < 2:
            raise ValueError(
                f"LinearBaseline.fit: {m.sum()} complete rows for "
                f"{self.feature_cols} + {target_col}; need at least 2"
            )
        x, y = x[m], y[m]
        self.mean_ = x.mean(axis=0)
        sd = x.std(axis=0)
        self.scale_ = np.where(sd > 0, sd, 1.0)
        z = (x - self.mean_) / self.scale_
        self.intercept_ = float(y.mean())
        # one BLAS thread: a (rows x ~40) Gram product is memory-bound, and OpenBLAS's
        # spinning threads made it 10-90x slower on a 2-core box with other work running
        with threadpool_limits(limits=1, user_api="blas"):
            a = z.T @ z + self.alpha * np.eye(z.shape[1])
            self.coef_ = np.linalg.solve(a, z.T @ (y - self.intercept_))
        return self

    def predict(self, frame: pd.DataFrame) -> pd.Series:
        """Predictions aligned to ``frame.index``; NaN where a feature is missing."""
        if self.coef_ is None:
            raise RuntimeError("LinearBaseline.predict called before fit")
        z = (self._x(frame) - self.mean_) / self.scale_
        return pd.Series(z @ self.coef_ + self.intercept_, index=frame.index, name="linear")


def fit_linear_baseline(
    train: pd.DataFrame,
    predict_on: pd.DataFrame,
    feature_cols: Sequence[str],
    target_col: str,
    alpha: float = 1.0,
) -> pd.Series:
    """Fit `LinearBaseline` on ``train`` and predict ``predict_on``."""
    return LinearBaseline(feature_cols, alpha).fit(train, target_col).predict(predict_on)
