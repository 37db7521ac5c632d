"""A planted market whose signal is observable and flips sign, for the real-retrain lifecycle
test (`tests/integration/test_flip_retrain.py`).

Each stock's next-day log return is ``b * r_t`` plus noise, where ``r_t`` is its own last
daily return (the served feature ``ret_1d``): one-day momentum; from session `FLIP` on
``b`` changes sign (one-day reversal). A model trained on the features can learn either
regime, so a retrain after the flip can really learn the new one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from tests.integration.test_load import TICKERS as SERVED_TICKERS

TICKERS = [*SERVED_TICKERS, *(f"P{i:02d}" for i in range(22))]  # Load calls the first 8
SESSIONS = pd.bdate_range("2022-09-01", periods=380)  # 200-day features warm up first
FLIP = 280
B = 0.35
HORIZON = 1
NAME = f"stockray-lgbm-h{HORIZON}"

# The experiment of the test: one served family, one horizon, no tuning, small LightGBM;
# the lifecycle keys are the documented defaults except the window sizes (a shorter test)
# and the floor: 0.02 (the default, for real markets) promoted a first post-flip mixture
# model here (RankIC 0.06 on the window, served Spearman with the signal ~0).
CONFIG = """kind: lgbm
horizons: [1]
families: [lgbm]
segments:
  fractions: {train: 0.65, valid: 0.15, test: 0.2}
params: {num_leaves: 7, learning_rate: 0.05, num_boost_round: 60, min_data_in_leaf: 50,
         feature_fraction: 1.0, bagging_fraction: 1.0, bagging_freq: 0, num_threads: 1}
tune: {num_samples: 0}
walkforward: {train_days: 100, valid_days: 20, test_days: 20}  # validate's data check
lifecycle:
  decay_promotion: recent_window
  decay_window: 10
  decay_min_sessions: 10
  decay_margin: 0.02
  decay_floor: 0.15         # planted RankIC ~0.35: promote a model that learned the flip
  decay_train_sessions: 30
  decay_valid_sessions: 5
"""


def market(seed: int = 3) -> pd.DataFrame:
    """OHLCV bars of `TICKERS` over `SESSIONS` (one CSV-able frame with a ticker column)."""
    rng = np.random.default_rng(seed)
    n, m = len(SESSIONS), len(TICKERS)
    b = np.where(np.arange(n) < FLIP, B, -B)  # the coefficient of the return into day t+1
    r = np.zeros((n, m))
    common = rng.normal(0, 0.004, n)
    for t in range(1, n):
        r[t] = b[t - 1] * r[t - 1] + common[t] + rng.normal(0, 0.012, m)
    close = 50 * np.exp(np.cumsum(r, axis=0)) * rng.uniform(0.5, 2.0, m)
    c = close.ravel()
    return pd.DataFrame({"date": np.repeat(SESSIONS.strftime("%Y-%m-%d"), m),
                         "ticker": np.tile(TICKERS, n), "open": c, "high": c * 1.005,
                         "low": c * 0.995, "close": c,
                         "volume": rng.integers(500_000, 2_000_000, n * m)})


def write_csv(path: Path, bars: pd.DataFrame, through: int) -> Path:
    """The market as a data vendor's file would hold it after session ``through``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    bars[bars.date <= SESSIONS[through].strftime("%Y-%m-%d")].to_csv(path, index=False)
    return path


def as_of(frame: pd.DataFrame, k: int) -> pd.DataFrame:
    """The training frame as it stood after the close of session ``k``: no later rows, and
    each ``fwd_*_{h}d`` label only where ``ts + h <= k`` (features are causal, tested in the pipeline)."""
    ts = pd.to_datetime(frame["ts"]).dt.tz_localize(None).dt.normalize()
    out = frame[ts <= SESSIONS[k]].copy()
    kept = ts[ts <= SESSIONS[k]].to_numpy()
    for c in [c for c in out.columns if c.startswith("fwd_")]:
        h = int(c.rsplit("_", 1)[1].rstrip("d"))
        out.loc[kept > SESSIONS[k - h].to_datetime64(), c] = np.nan
    return out
