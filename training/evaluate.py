"""Evaluation metrics shared by every model and report.

All metrics take aligned 1-D arrays/Series of predictions and realised targets plus the date of
each row; cross-sectional metrics are computed per date and then averaged over dates.

Also here: directional metrics (`hit_rate`, `direction_mcc`), pooled metrics, `calibration_table`,
a top-k long-short `backtest` net of costs on non-overlapping ``h``-day holds, and
`evaluate_predictions`, which gathers every scalar for one prediction column. Pure pandas/numpy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


def _per_date_corr(pred, target, dates, method: str) -> pd.Series:
    """Per-date correlation, vectorised over dates (same rows and skips as a per-group loop)."""
    if method not in ("pearson", "spearman"):
        raise ValueError(f"method must be 'pearson' or 'spearman', got {method!r}")
    frame = pd.DataFrame(
        {"p": np.asarray(pred, float), "y": np.asarray(target, float), "d": np.asarray(dates)}
    ).dropna()
    if frame.empty:
        return pd.Series(dtype=float)
    g = frame.groupby("d", sort=True)
    ok = (g.size() >= 2) & (g["p"].nunique() >= 2) & (g["y"].nunique() >= 2)
    frame = frame[frame["d"].map(ok).to_numpy(bool)]
    if frame.empty:
        return pd.Series(dtype=float)
    g = frame.groupby("d", sort=True)
    if method == "spearman":
        frame = frame.assign(p=g["p"].rank(), y=g["y"].rank())
        g = frame.groupby("d", sort=True)
    dp = frame["p"] - g["p"].transform("mean")
    dy = frame["y"] - g["y"].transform("mean")
    parts = pd.DataFrame({"d": frame["d"], "xy": dp * dy, "xx": dp * dp, "yy": dy * dy})
    sums = parts.groupby("d", sort=True).sum()
    out = sums["xy"] / np.sqrt(sums["xx"] * sums["yy"])
    out.index.name = None
    return out.astype(float)


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


# --- extensions: per-date IC series, ICIR, pooled and directional metrics ----------------------


def daily_ic(pred, target, dates, method: str = "pearson") -> pd.Series:
    """Cross-sectional correlation per date (dates with < 2 distinct values are skipped).

    Args:
        method: ``"pearson"`` (IC) or ``"spearman"`` (rank IC).

    Returns:
        Series indexed by date, ascending.
    """
    return _per_date_corr(pred, target, dates, method)


def icir(pred, target, dates, method: str = "pearson") -> float:
    """Information ratio of the daily IC: mean / std (ddof=1) over dates, not annualised.

    With ``h``-day labels consecutive daily ICs overlap, so ``icir * sqrt(n_dates)`` overstates
    a t-statistic by about ``sqrt(h)``; report ICIR, not that t-stat.
    """
    s = _per_date_corr(pred, target, dates, method)
    if len(s) < 2:
        return float("nan")
    sd = float(s.std(ddof=1))
    return float(s.mean() / sd) if sd > 0 else float("nan")


def _finite_pair(pred, target) -> tuple[np.ndarray, np.ndarray]:
    p, y = np.asarray(pred, float), np.asarray(target, float)
    if p.shape != y.shape:
        raise ValueError(f"pred and target differ in shape: {p.shape} vs {y.shape}")
    m = np.isfinite(p) & np.isfinite(y)
    return p[m], y[m]


def pooled_ic(pred, target, method: str = "pearson") -> float:
    """Correlation over all rows pooled (NaN when either side is constant)."""
    p, y = _finite_pair(pred, target)
    if len(p) < 2 or np.ptp(p) == 0 or np.ptp(y) == 0:
        return float("nan")
    if method == "spearman":
        p = pd.Series(p).rank().to_numpy()
        y = pd.Series(y).rank().to_numpy()
    elif method != "pearson":
        raise ValueError(f"method must be 'pearson' or 'spearman', got {method!r}")
    return float(np.corrcoef(p, y)[0, 1])


def mae(pred, target) -> float:
    """Mean absolute error over rows where both are finite."""
    p, y = _finite_pair(pred, target)
    return float(np.mean(np.abs(p - y))) if len(p) else float("nan")


def hit_rate(pred, target) -> float:
    """Share of rows where ``sign(pred) == sign(target)``; 0 is its own sign.

    Every finite row counts: no threshold drops small moves, so a zero prediction is a hit
    only when the realised return is exactly zero. Rows with a NaN on either side are not
    rows of the evaluation (unknown label / no prediction) and are left out.
    """
    p, y = _finite_pair(pred, target)
    return float(np.mean(np.sign(p) == np.sign(y))) if len(p) else float("nan")


def direction_mcc(pred, target) -> float:
    """Matthews correlation of the direction classes {-1, 0, +1} of pred vs target.

    Multiclass MCC (Gorodkin 2004); equals the binary MCC when no value is exactly zero.
    A constant predictor (e.g. always-up) scores 0.0 by the usual convention: it has no
    directional skill, whatever its hit rate.
    """
    p, y = _finite_pair(pred, target)
    if not len(p):
        return float("nan")
    sp, sy = np.sign(p).astype(int) + 1, np.sign(y).astype(int) + 1
    cm = np.zeros((3, 3))
    np.add.at(cm, (sy, sp), 1.0)
    s, c = cm.sum(), np.trace(cm)
    t_k, p_k = cm.sum(axis=1), cm.sum(axis=0)
    den = np.sqrt((s * s - p_k @ p_k) * (s * s - t_k @ t_k))
    return float((c * s - p_k @ t_k) / den) if den > 0 else 0.0


def interval_coverage(lower, upper, target) -> float:
    """Share of finite targets inside ``[lower, upper]``."""
    lo, hi, y = (np.asarray(a, float) for a in (lower, upper, target))
    m = np.isfinite(lo) & np.isfinite(hi) & np.isfinite(y)
    return float(np.mean((y[m] >= lo[m]) & (y[m] <= hi[m]))) if m.any() else float("nan")


def market_wide_features(frame: pd.DataFrame, feature_names, ts_col: str = "ts") -> list[str]:
    """Features identical across tickers on every date (index, macro, calendar series).

    Such a feature cannot rank stocks on a date; a model that leans on it times the market.
    """
    out = []
    for f in feature_names:
        v = frame[[ts_col, f]].dropna()
        if len(v) and v.groupby(ts_col)[f].nunique().max() <= 1:
            out.append(f)
    return out


def calibration_table(pred, target, n_bins: int = 10) -> pd.DataFrame:
    """Predictions binned by quantile vs the mean realised target in each bin.

    Returns:
        Columns ``bin, n, pred_mean, target_mean, target_std``; fewer rows than ``n_bins``
        when predictions have ties (a constant predictor gives one bin).
    """
    p, y = _finite_pair(pred, target)
    cols = ["bin", "n", "pred_mean", "target_mean", "target_std"]
    if not len(p):
        return pd.DataFrame(columns=cols)
    ranks = pd.Series(p).rank(method="first").to_numpy()
    bins = np.minimum((ranks - 1) * n_bins // len(p), n_bins - 1).astype(int)
    if np.ptp(p) == 0:
        bins[:] = 0
    g = pd.DataFrame({"bin": bins, "p": p, "y": y}).groupby("bin")
    out = pd.DataFrame(
        {
            "n": g.size(),
            "pred_mean": g["p"].mean(),
            "target_mean": g["y"].mean(),
            "target_std": g["y"].std(ddof=1),
        }
    ).reset_index()
    return out[cols]


# --- long-short backtest ------------------------------------------------------------------------

TRADING_DAYS_PER_YEAR = 252


@dataclass
class BacktestResult:
    """Outcome of `backtest`; series are indexed by the rebalance (formation) date.

    ``periods`` holds one row per rebalance: ``gross``, ``cost``, ``net`` (simple returns over
    the holding period), ``turnover`` (sum of |weight change|), ``n_long``, ``n_short``.
    """

    periods: pd.DataFrame
    equity: pd.Series
    horizon: int
    periods_per_year: float
    ann_return: float
    ann_vol: float
    sharpe: float
    max_drawdown: float
    avg_turnover: float
    total_cost: float

    @property
    def returns(self) -> pd.Series:
        """Net simple return per holding period."""
        return self.periods["net"]

    def summary(self) -> dict[str, float]:
        """Scalar metrics only (JSON-ready)."""
        return {
            "ann_return": self.ann_return,
            "ann_vol": self.ann_vol,
            "sharpe": self.sharpe,
            "max_drawdown": self.max_drawdown,
            "avg_turnover": self.avg_turnover,
            "total_cost": self.total_cost,
            "n_periods": float(len(self.periods)),
            "periods_per_year": self.periods_per_year,
        }


def performance(returns, periods_per_year: float) -> dict[str, float]:
    """Annualised geometric return, vol, Sharpe (rf = 0) and max drawdown of simple returns.

    Sharpe = mean / std(ddof=1) * sqrt(periods_per_year); NaN when std is 0 or < 2 periods.
    Max drawdown is the worst ``equity / running_peak - 1`` with equity starting at 1.
    """
    r = np.asarray(returns, float)
    if not len(r):
        nan = float("nan")
        return {"ann_return": nan, "ann_vol": nan, "sharpe": nan, "max_drawdown": nan}
    equity = np.cumprod(1.0 + r)
    ann_ret = float(equity[-1] ** (periods_per_year / len(r)) - 1.0) if equity[-1] > 0 else -1.0
    sd = float(np.std(r, ddof=1)) if len(r) > 1 else float("nan")
    sharpe = float(np.mean(r) / sd * np.sqrt(periods_per_year)) if sd and sd > 0 else float("nan")
    peak = np.maximum.accumulate(np.concatenate([[1.0], equity]))
    mdd = float(np.min(np.concatenate([[1.0], equity]) / peak - 1.0))
    return {
        "ann_return": ann_ret,
        "ann_vol": sd * np.sqrt(periods_per_year),
        "sharpe": sharpe,
        "max_drawdown": mdd,
    }


def _target_weights(
    g: pd.DataFrame, top_k: int | None, quantile: float, long_short: bool
) -> pd.Series:
    """Equal weights: +1/k on the k highest predictions, -1/k on the k lowest."""
    n = len(g)
    k = top_k if top_k is not None else int(np.floor(n * quantile))
    need = 2 * k if long_short else k
    if k < 1 or n < need or g["p"].nunique() < 2:
        return pd.Series(dtype=float)  # no information to rank on: stay in cash
    # ties broken by ticker so the result is deterministic
    g = g.sort_values(["p", "k"], ascending=[False, True], kind="stable")
    w = pd.Series(1.0 / k, index=g["k"].iloc[:k].to_numpy())
    if long_short:
        w = pd.concat([w, pd.Series(-1.0 / k, index=g["k"].iloc[n - k :].to_numpy())])
    return w


def backtest(
    frame: pd.DataFrame,
    pred_col: str,
    target_col: str,
    *,
    horizon: int,
    top_k: int | None = None,
    quantile: float = 0.2,
    cost_bps: float = 10.0,
    long_short: bool = True,
    offset: int = 0,
    ts_col: str = "ts",
    ticker_col: str = "ticker",
) -> BacktestResult:
    """Top-k / bottom-k equal-weight portfolio rebalanced every ``horizon`` trading dates.

    Non-overlapping returns: ``target_col`` is an ``h``-day forward *log* return, so the book
    is rebalanced on every ``h``-th panel date (starting at ``offset``) and held for exactly
    ``h`` days; periods never overlap and ``periods_per_year = 252 / h``. (The alternative,
    dividing each date's ``h``-day return by ``h``, smooths returns and overstates Sharpe.)
    Different ``offset`` values give the other ``h - 1`` phases of the same strategy.

    Weights: long leg sums to +1, short leg to -1 (dollar-neutral, gross 2); long-only sums
    to +1. Period gross return = sum_i w_i * (exp(target_i) - 1). Turnover = sum_i |w_t,i -
    w_prev,i| against the previous target weights (price drift inside the period ignored);
    the first period pays for entering. Cost = turnover * cost_bps / 1e4, paid at rebalance.
    Only rows with a finite prediction and target are tradable; a date whose predictions are
    all equal (no ranking) or too few names holds cash.

    Args:
        frame: long panel with ticker, ts, ``pred_col``, ``target_col``.
        horizon: label horizon ``h`` in trading days.
        top_k: names per leg; default ``floor(n_names * quantile)``.
        quantile: fraction per leg when ``top_k`` is None.
        cost_bps: cost in basis points per unit of turnover.
        long_short: False for a long-only top-k book.
        offset: first rebalance date index (0 .. h-1).

    Returns:
        `BacktestResult`.
    """
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1 trading day, got {horizon}")
    df = pd.DataFrame(
        {
            "d": pd.to_datetime(frame[ts_col]).to_numpy(),
            "k": frame[ticker_col].to_numpy(),
            "p": np.asarray(frame[pred_col], float),
            "y": np.asarray(frame[target_col], float),
        }
    )
    dates = pd.DatetimeIndex(np.sort(df["d"].unique()))
    rebal = dates[offset::horizon]
    df = df[np.isfinite(df["p"]) & np.isfinite(df["y"]) & df["d"].isin(rebal)]
    groups = dict(tuple(df.groupby("d", sort=True)))
    prev = pd.Series(dtype=float)
    rows = []
    for d in rebal:
        g = groups.get(d)
        w = pd.Series(dtype=float) if g is None else _target_weights(g, top_k, quantile, long_short)
        turnover = float(prev.sub(w, fill_value=0.0).abs().sum()) if len(prev) or len(w) else 0.0
        gross = 0.0
        if g is not None and len(w):
            ret = np.expm1(g.set_index("k")["y"].reindex(w.index).to_numpy())
            gross = float(w.to_numpy() @ ret)
        cost = turnover * cost_bps / 1e4
        rows.append(
            {
                "ts": d,
                "gross": gross,
                "cost": cost,
                "net": gross - cost,
                "turnover": turnover,
                "n_long": int((w > 0).sum()),
                "n_short": int((w < 0).sum()),
            }
        )
        prev = w
    periods = pd.DataFrame(
        rows, columns=["ts", "gross", "cost", "net", "turnover", "n_long", "n_short"]
    ).set_index("ts")
    ppy = TRADING_DAYS_PER_YEAR / horizon
    perf = performance(periods["net"], ppy)
    equity = (1.0 + periods["net"]).cumprod().rename("equity")
    return BacktestResult(
        periods=periods,
        equity=equity,
        horizon=horizon,
        periods_per_year=ppy,
        avg_turnover=float(periods["turnover"].mean()) if len(periods) else float("nan"),
        total_cost=float(periods["cost"].sum()),
        **perf,
    )


def evaluate_predictions(
    frame: pd.DataFrame,
    pred_col: str,
    target_col: str,
    horizon: int,
    *,
    ts_col: str = "ts",
    ticker_col: str = "ticker",
    top_k: int | None = None,
    quantile: float = 0.2,
    cost_bps: float = 10.0,
) -> dict[str, float]:
    """Every scalar metric of one prediction column (see `evaluate_with_backtest`)."""
    return evaluate_with_backtest(
        frame, pred_col, target_col, horizon, ts_col=ts_col, ticker_col=ticker_col,
        top_k=top_k, quantile=quantile, cost_bps=cost_bps,
    )[0]


def evaluate_with_backtest(
    frame: pd.DataFrame,
    pred_col: str,
    target_col: str,
    horizon: int,
    *,
    ts_col: str = "ts",
    ticker_col: str = "ticker",
    top_k: int | None = None,
    quantile: float = 0.2,
    cost_bps: float = 10.0,
) -> tuple[dict[str, float], BacktestResult]:
    """Every scalar metric of one prediction column against one label column.

    Rows without a label are not evaluation rows; rows with a label but no prediction lower
    ``coverage`` (and are absent from the other metrics). Correlation metrics are NaN for a
    constant predictor (undefined), not 0. Backtest metrics carry the prefix ``bt_``.

    Returns:
        ``n_rows, n_dates, coverage, ic, rank_ic, icir, rank_icir, pooled_ic, pooled_rank_ic,
        hit_rate, mcc, rmse, mae, bt_ann_return, bt_ann_vol, bt_sharpe, bt_max_drawdown,
        bt_avg_turnover, bt_total_cost, bt_n_periods, bt_periods_per_year``, and the
        `BacktestResult` itself (its equity curve and periods).
    """
    missing = [c for c in (ts_col, ticker_col, pred_col, target_col) if c not in frame]
    if missing:
        raise KeyError(
            f"evaluate_predictions: frame lacks columns {missing}; has {list(frame.columns)}"
        )
    f = frame[np.isfinite(np.asarray(frame[target_col], float))]
    p, y, d = f[pred_col].to_numpy(float), f[target_col].to_numpy(float), f[ts_col].to_numpy()
    out: dict[str, float] = {
        "n_rows": float(len(f)),
        "n_dates": float(pd.Series(d).nunique()),
        "coverage": float(np.isfinite(p).mean()) if len(f) else float("nan"),
        "ic": ic(p, y, d),
        "rank_ic": rank_ic(p, y, d),
        "icir": icir(p, y, d),
        "rank_icir": icir(p, y, d, "spearman"),
        "pooled_ic": pooled_ic(p, y),
        "pooled_rank_ic": pooled_ic(p, y, "spearman"),
        "hit_rate": hit_rate(p, y),
        "mcc": direction_mcc(p, y),
        "rmse": rmse(p, y),
        "mae": mae(p, y),
    }
    bt = backtest(
        f,
        pred_col,
        target_col,
        horizon=horizon,
        top_k=top_k,
        quantile=quantile,
        cost_bps=cost_bps,
        ts_col=ts_col,
        ticker_col=ticker_col,
    )
    out.update({f"bt_{k}": v for k, v in bt.summary().items()})
    return out, bt
