"""Helpers for training tests: a planted-signal market through the real feature pipeline."""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd

from features.pipeline import build_features_local
from features.sources import MARKET_TICKER
from training.synthetic import make_market


def market_bars(bars: pd.DataFrame) -> pd.DataFrame:
    """An equal-weight index of the synthetic cross-section, as the market series."""
    logret = np.log(bars.pivot(index="ts", columns="ticker", values="close")).diff()
    level = 100 * np.exp(logret.mean(axis=1).fillna(0).cumsum())
    return pd.DataFrame({"ticker": MARKET_TICKER, "ts": level.index, "open": level.values,
                         "high": level.values, "low": level.values, "close": level.values,
                         "volume": 1.0})


@functools.cache
def planted_frame(n_tickers: int = 20, n_days: int = 500, seed: int = 3) -> pd.DataFrame:
    """Features + labels (sorted by ts, ticker) of a market with a planted 1-day reversal."""
    market = make_market(n_tickers=n_tickers, n_days=n_days, seed=seed)
    stocks = market.bars.drop(columns=["adj_close"])
    bars = pd.concat([stocks, market_bars(market.bars)], ignore_index=True)
    bars = bars.assign(adj_factor=1.0, source="synthetic", ingested_at=bars["ts"].max())
    frame = build_features_local(bars)
    return frame.sort_values(["ts", "ticker"]).reset_index(drop=True)
