"""Market context for a universe without an index series: an index derived from the universe.

A user's own universe often comes without an index (no ``^GSPC`` in the lake). The market
features (``mkt_ret_1d``, ``mkt_vol_20``, regimes ...) then come from this universe's own index
instead of being NaN: each day's return is the weighted mean of the stocks' adjusted close-to-
close returns, chained into a level that starts at 100.

Weights: the 20-day average dollar volume (close * volume) up to the previous bar, a proxy for
market cap ("cap-weighted"), when at least :data:`CAP_MIN_COVERAGE` of the bars have a positive
volume; otherwise every stock counts the same ("equal-weighted"). Daily returns are clipped to
[-50%, +100%] first so one bad print cannot move the index. Everything is causal: the weight
uses bars before the day, the return that day's close.

DuckDB computes it over the lake's parquet files, so the universe is never loaded whole.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from features.sources import MARKET_TICKER

#: Share of bars with a positive close * volume needed for dollar-volume (cap-proxy) weights.
CAP_MIN_COVERAGE = 0.95
RET_CLIP = (-0.5, 1.0)
WEIGHT_DAYS = 20


def _sql(glob: str, weighted: bool) -> str:
    lo, hi = RET_CLIP
    w = ("avg(dv) OVER (PARTITION BY ticker ORDER BY ts "
         f"ROWS BETWEEN {WEIGHT_DAYS} PRECEDING AND 1 PRECEDING)") if weighted else "1.0"
    return f"""
    WITH b AS (
      SELECT ticker, ts, close * adj_factor AS px,
             CASE WHEN volume > 0 THEN close * volume END AS dv
      FROM read_parquet('{glob}')
      WHERE ticker <> '{MARKET_TICKER}' AND close > 0 AND adj_factor > 0
    ), l AS (
      SELECT ts, px / lag(px) OVER (PARTITION BY ticker ORDER BY ts) - 1 AS raw, {w} AS wt
      FROM b
    ), r AS (  -- DuckDB's greatest/least skip NULLs: keep a first bar's NULL return NULL
      SELECT ts, CASE WHEN raw IS NULL THEN NULL ELSE least(greatest(raw, {lo}), {hi}) END
             AS ret, wt
      FROM l
    )
    SELECT ts, count(ret) FILTER (WHERE wt > 0) AS n,
           sum(ret * wt) FILTER (WHERE wt > 0) / sum(wt) FILTER (WHERE ret IS NOT NULL
                                                              AND wt > 0) AS ret
    FROM r GROUP BY ts ORDER BY ts
    """


def derive_index_bars(bars_dir: Path) -> tuple[pd.DataFrame, dict]:
    """Canonical bars of the universe index (ticker :data:`MARKET_TICKER`, not stored in the
    lake) and a summary for the data-quality report."""
    import duckdb

    glob = str(bars_dir / "ticker=*" / "bars.parquet")
    con = duckdb.connect()
    try:
        total, with_vol, tickers = con.execute(
            f"SELECT count(*), count(*) FILTER (WHERE volume > 0), count(DISTINCT ticker) "
            f"FROM read_parquet('{glob}') WHERE ticker <> '{MARKET_TICKER}'").fetchone()
        coverage = with_vol / total if total else 0.0
        weighted = coverage >= CAP_MIN_COVERAGE
        daily = con.execute(_sql(glob, weighted)).df()
    finally:
        con.close()
    ret = daily["ret"].to_numpy(float)
    ret = np.where(np.isfinite(ret), ret, 0.0)  # first day / no weights yet: flat
    level = 100.0 * np.cumprod(1.0 + ret)
    ts = pd.DatetimeIndex(daily["ts"])
    ts = ts.tz_localize("UTC") if ts.tz is None else ts.tz_convert("UTC")
    bars = pd.DataFrame({"ticker": MARKET_TICKER, "ts": ts, "open": level, "high": level,
                         "low": level, "close": level, "volume": 0.0, "adj_factor": 1.0,
                         "source": f"derived:universe-{'cap' if weighted else 'equal'}",
                         "ingested_at": pd.Timestamp.now(tz="UTC")})
    weighting = ("cap-weighted (proxy: 20-day average close*volume of the previous bars)"
                 if weighted else "equal-weighted")
    info = {"source": "derived from the universe (no index series in the lake)",
            "weighting": weighting,
            "volume_coverage": round(float(coverage), 4),
            "tickers": int(tickers), "dates": len(bars),
            "min_tickers_per_date": int(daily["n"].min()) if len(daily) else 0,
            "first_ts": str(ts[0]) if len(ts) else None,
            "last_ts": str(ts[-1]) if len(ts) else None}
    return bars, info


class IndexTickerSource:
    """A user's source in which one ticker (e.g. ``SPY``) is the market index: its rows are
    stored under the lake's index key :data:`MARKET_TICKER`, the others as they are."""

    def __init__(self, inner, index_ticker: str) -> None:
        self.inner = inner
        self.index_ticker = index_ticker.strip().upper()
        self.name = inner.name
        self.path = getattr(inner, "path", None)
        self.found = 0  # rows relabelled in the last fetch

    def fetch(self) -> pd.DataFrame:
        frame = self.inner.fetch()
        is_idx = frame["ticker"].astype(str).str.strip().str.upper() == self.index_ticker
        self.found = int(is_idx.sum())
        frame.loc[is_idx, "ticker"] = MARKET_TICKER
        return frame
