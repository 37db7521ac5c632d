"""Feature and label computation: per-ticker kernels, market context, forward-return labels.

Every feature at row ``ts`` is computed from bars at or before ``ts`` only (the kernels are
causal: each output uses its input window ending at the same index). Labels look forward and
live in a separate table that is never served online.

The per-ticker function is plain pandas/numpy; ``build_features_ray`` runs it with Ray Data
(``groupby("ticker").map_groups``) and ``build_features_local`` in one process, so the same
code runs on a laptop and on a cluster.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

import kernels as K
from features.sources import MARKET_TICKER

HORIZONS = (1, 5, 20)
LABEL_COLUMNS = [f"fwd_ret_{h}d" for h in HORIZONS]


@dataclass(frozen=True)
class FeatureSpec:
    """One served feature: its column name, how it is computed, and from what."""

    name: str
    formula: str
    source: str = "bars"


FEATURES: tuple[FeatureSpec, ...] = (
    FeatureSpec("ret_1d", "log(close_t / close_t-1), adjusted"),
    FeatureSpec("ret_5d", "log(close_t / close_t-5), adjusted"),
    FeatureSpec("ret_20d", "log(close_t / close_t-20), adjusted"),
    FeatureSpec("sma_ratio_10", "close / SMA(close, 10) - 1"),
    FeatureSpec("sma_ratio_50", "close / SMA(close, 50) - 1"),
    FeatureSpec("ema_ratio_12_26", "EMA(close, 12) / EMA(close, 26) - 1"),
    FeatureSpec("rsi_14", "Wilder RSI(close, 14)"),
    FeatureSpec("macd_hist_norm", "MACD histogram(12, 26, 9) / close"),
    FeatureSpec("bb_pctb_20", "Bollinger %b(close, 20, 2)"),
    FeatureSpec("atr_norm_14", "ATR(high, low, close, 14) / close"),
    FeatureSpec("vol_20", "std of 1-day log returns over 20 days"),
    FeatureSpec("volume_z_20", "z-score of log(1 + volume) over 20 days"),
    FeatureSpec("mkt_ret_1d", "S&P 500 1-day log return", "market"),
    FeatureSpec("mkt_ret_5d", "S&P 500 5-day log return", "market"),
    FeatureSpec("mkt_vol_20", "S&P 500 20-day volatility of log returns", "market"),
    FeatureSpec("mkt_trend_200", "S&P 500 close / SMA(close, 200) - 1 (trend regime)", "market"),
    FeatureSpec("day_of_week", "weekday of ts, Monday = 0", "calendar"),
    FeatureSpec("month", "month of ts, 1..12", "calendar"),
)
FEATURE_NAMES = [f.name for f in FEATURES]
MARKET_FEATURES = [f.name for f in FEATURES if f.source == "market"]


def adjusted(bars: pd.DataFrame) -> dict[str, np.ndarray]:
    """Split/dividend-adjusted OHLC arrays of one ticker (``price * adj_factor``)."""
    f = bars["adj_factor"].to_numpy(float)
    return {k: bars[k].to_numpy(float) * f for k in ("open", "high", "low", "close")}


def ticker_features(bars: pd.DataFrame) -> pd.DataFrame:
    """Price/volume features of one ticker's bars (sorted by ts). Calendar/market excluded."""
    px = adjusted(bars)
    close, high, low = px["close"], px["high"], px["low"]
    volume = bars["volume"].to_numpy(float)
    out = pd.DataFrame({"ticker": bars["ticker"].to_numpy(), "ts": bars["ts"].to_numpy()})
    out["ts"] = pd.to_datetime(out["ts"], utc=True)
    out["ret_1d"] = K.log_returns(close, 1)
    out["ret_5d"] = K.log_returns(close, 5)
    out["ret_20d"] = K.log_returns(close, 20)
    out["sma_ratio_10"] = close / K.sma(close, 10) - 1.0
    out["sma_ratio_50"] = close / K.sma(close, 50) - 1.0
    out["ema_ratio_12_26"] = K.ema(close, 12) / K.ema(close, 26) - 1.0
    out["rsi_14"] = K.rsi(close, 14)
    _, _, hist = K.macd(close, 12, 26, 9)
    out["macd_hist_norm"] = hist / close
    bb = K.bollinger(close, 20, 2.0)
    out["bb_pctb_20"] = bb[3]
    out["atr_norm_14"] = K.atr(high, low, close, 14) / close
    out["vol_20"] = K.volatility(close, 20)
    out["volume_z_20"] = K.zscore(np.log1p(volume), 20)
    return out


def market_features(market_bars: pd.DataFrame) -> pd.DataFrame:
    """Context features of the market index, keyed by ts."""
    close = adjusted(market_bars)["close"]
    out = pd.DataFrame({"ts": pd.to_datetime(market_bars["ts"].to_numpy(), utc=True)})
    out["mkt_ret_1d"] = K.log_returns(close, 1)
    out["mkt_ret_5d"] = K.log_returns(close, 5)
    out["mkt_vol_20"] = K.volatility(close, 20)
    out["mkt_trend_200"] = close / K.sma(close, 200) - 1.0
    return out


def labels(bars: pd.DataFrame, horizons=HORIZONS) -> pd.DataFrame:
    """Forward log returns of one ticker: ``fwd_ret_hd[t] = log(close[t+h] / close[t])``.

    NaN for the last h rows (the future is unknown). Uses adjusted closes.
    """
    close = adjusted(bars)["close"]
    out = pd.DataFrame({"ticker": bars["ticker"].to_numpy(),
                        "ts": pd.to_datetime(bars["ts"].to_numpy(), utc=True)})
    logc = np.log(close)
    for h in horizons:
        fwd = np.full_like(logc, np.nan)
        if len(logc) > h:
            fwd[:-h] = logc[h:] - logc[:-h]
        out[f"fwd_ret_{h}d"] = fwd
    return out


def features_for_group(bars: pd.DataFrame, market: pd.DataFrame | None) -> pd.DataFrame:
    """Full feature + label rows of one ticker (the unit of work of the pipeline).

    Market features are joined as of each bar's ts (the index row at or before it), calendar
    features derive from ts, and ``feature_ts`` (epoch seconds) records the as-of time.
    """
    bars = bars.sort_values("ts").reset_index(drop=True)
    feats = ticker_features(bars)
    if market is not None and len(market):
        feats = pd.merge_asof(feats.sort_values("ts"), market.sort_values("ts"), on="ts",
                              direction="backward")
    else:
        for name in MARKET_FEATURES:
            feats[name] = np.nan
    feats["day_of_week"] = feats["ts"].dt.dayofweek.astype(float)
    feats["month"] = feats["ts"].dt.month.astype(float)
    feats["feature_ts"] = feats["ts"].astype("int64") / 1e9
    lab = labels(bars)
    merged = feats.merge(lab, on=["ticker", "ts"], how="left", validate="one_to_one")
    return merged[["ticker", "ts", *FEATURE_NAMES, "feature_ts", *LABEL_COLUMNS]]


def split_market(bars: pd.DataFrame, market_ticker: str = MARKET_TICKER):
    """Separate the market index from the stock bars; returns (stocks, market_features)."""
    is_mkt = bars["ticker"] == market_ticker
    market = market_features(bars[is_mkt].sort_values("ts")) if is_mkt.any() else None
    return bars[~is_mkt].reset_index(drop=True), market


def build_features_local(bars: pd.DataFrame) -> pd.DataFrame:
    """One-process path: every ticker's features and labels, sorted by (ticker, ts)."""
    stocks, market = split_market(bars)
    parts = [features_for_group(g, market) for _, g in stocks.groupby("ticker", sort=True)]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def build_features_ray(bars: pd.DataFrame) -> pd.DataFrame:
    """Ray Data path: ``groupby(ticker).map_groups`` over a running Ray cluster."""
    import ray.data

    stocks, market = split_market(bars)
    ds = ray.data.from_pandas(stocks)
    out = ds.groupby("ticker").map_groups(
        features_for_group, batch_format="pandas", fn_kwargs={"market": market})
    frame = out.to_pandas()
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
    return frame.sort_values(["ticker", "ts"]).reset_index(drop=True)
