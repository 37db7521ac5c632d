"""Drift and regime checks: PSI and KS per feature, prediction drift, market regime.

- PSI (population stability index) over the reference window's deciles; rule of thumb
  (Siddiqi): < 0.1 stable, 0.1-0.25 moderate, > 0.25 a shift worth acting on.
- KS: `scipy.stats.ks_2samp` two-sample test (statistic and p-value).
- Regime: a two-state Markov-switching model of the market's daily returns with switching
  variance (`statsmodels` ``MarkovRegression``): the smoothed probability of the high-volatility
  state, and the dates where the most likely state changes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

PSI_SHIFT = 0.25


def psi(reference, current, bins: int = 10, eps: float = 1e-4) -> float:
    """Population stability index of ``current`` against ``reference`` (reference quantile
    bins; NaNs dropped; NaN when either side has fewer than ``bins`` values)."""
    ref = np.asarray(reference, float)
    cur = np.asarray(current, float)
    ref, cur = ref[np.isfinite(ref)], cur[np.isfinite(cur)]
    if len(ref) < bins or len(cur) < bins:
        return float("nan")
    edges = np.unique(np.quantile(ref, np.linspace(0, 1, bins + 1)[1:-1]))
    p = np.bincount(np.searchsorted(edges, ref, side="right"), minlength=len(edges) + 1)
    q = np.bincount(np.searchsorted(edges, cur, side="right"), minlength=len(edges) + 1)
    p = np.clip(p / p.sum(), eps, None)
    q = np.clip(q / q.sum(), eps, None)
    return float(np.sum((q - p) * np.log(q / p)))


def feature_drift(reference: pd.DataFrame, current: pd.DataFrame,
                  features: Sequence[str]) -> pd.DataFrame:
    """PSI and KS per feature, largest PSI first (columns psi, ks, ks_pvalue, shifted)."""
    from scipy.stats import ks_2samp

    rows = []
    for f in features:
        a = reference[f].to_numpy(float)
        b = current[f].to_numpy(float)
        a, b = a[np.isfinite(a)], b[np.isfinite(b)]
        if len(a) < 10 or len(b) < 10:
            continue
        ks = ks_2samp(a, b)
        rows.append({"feature": f, "psi": psi(a, b), "ks": float(ks.statistic),
                     "ks_pvalue": float(ks.pvalue)})
    out = pd.DataFrame(rows, columns=["feature", "psi", "ks", "ks_pvalue"])
    out["shifted"] = out["psi"] > PSI_SHIFT
    return out.sort_values("psi", ascending=False).reset_index(drop=True)


def regime(market_returns: pd.Series) -> pd.DataFrame:
    """Smoothed P(high-volatility state) per date and the most likely state (0 calm, 1 high).

    Raises:
        ValueError: fewer than 60 returns (the model needs a season of data).
    """
    from statsmodels.tsa.regime_switching.markov_regression import MarkovRegression

    r = market_returns.dropna()
    if len(r) < 60:
        raise ValueError(f"regime: {len(r)} market returns; need >= 60")
    scale = float(r.std()) or 1.0
    model = MarkovRegression(r.to_numpy() / scale, k_regimes=2, switching_variance=True)
    fit = model.fit(disp=False)  # statsmodels' default start values: deterministic
    params = dict(zip(model.param_names, np.asarray(fit.params), strict=True))
    sigma = np.asarray([params[f"sigma2[{k}]"] for k in (0, 1)])
    high = int(np.argmax(sigma))
    p_high = np.asarray(fit.smoothed_marginal_probabilities)[:, high]
    return pd.DataFrame({"p_high_vol": p_high, "state": (p_high > 0.5).astype(int)},
                        index=r.index)


def regime_changes(states: pd.Series) -> list:
    """Dates where the most likely regime differs from the previous date's."""
    s = states.astype(int)
    return list(s.index[1:][s.to_numpy()[1:] != s.to_numpy()[:-1]])


def offline_drift(features_path, window_dates: int) -> pd.DataFrame:
    """PSI/KS of the offline store's last ``window_dates`` dates against everything before
    (the history the models were trained on); empty when there is no store yet."""
    from pathlib import Path

    if not Path(features_path).exists():
        return pd.DataFrame(columns=["feature", "psi", "ks", "ks_pvalue", "shifted"])
    frame = pd.read_parquet(features_path)
    dates = pd.Series(frame["ts"].unique()).sort_values()
    cut = dates.iloc[max(0, len(dates) - window_dates)]
    features = [c for c in frame.columns if c not in ("ticker", "ts", "created")
                and pd.api.types.is_numeric_dtype(frame[c])]
    return feature_drift(frame[frame["ts"] < cut], frame[frame["ts"] >= cut], features)


def universe_regime(bars: pd.DataFrame, days: int = 750) -> pd.DataFrame | None:
    """`regime` of the equal-weighted universe's daily returns over the last ``days`` (None
    when there are too few)."""
    wide = bars.pivot_table(index="ts", columns="ticker", values="close")
    market = wide.pct_change(fill_method=None).mean(axis=1).dropna()
    try:
        return regime(market.iloc[-days:])
    except ValueError:
        return None
