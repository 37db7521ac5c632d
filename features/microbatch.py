"""Minute microbatches -> the vectorised incremental :class:`kernels.Engine`, exactly once.

:class:`MinuteEngine` keeps one engine row per ticker plus the small per-ticker state the
stream needs besides the indicators: the last bar time (idempotency), the running session bar
(for the daily-row refresh), and what the event rules compare against (previous close and
volatility, a volume average). ``update(batch)`` takes any microbatch of minute bars:

- rows whose ``(ticker, ts)`` is not newer than that ticker's last bar are dropped and counted
  (a duplicate or a replay after restart is a no-op; a late bar is never applied out of order);
- several bars of one ticker in one batch are applied in time order ("rounds": round k ticks the
  k-th bar of every ticker that has one), so the result does not depend on how bars were cut
  into batches: streamed state == one batch recomputation over the same bars (tested).

:meth:`save` / :meth:`load` snapshot everything to one parquet file, written atomically
(``features.lake.atomic_write_table``): a restart resumes from the last snapshot and the
idempotency rule skips any bar it had already applied.

May import: numpy, pandas, pyarrow, kernels, features.lake.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from features.lake import atomic_write_table, read_table_once
from kernels.engine import DEFAULT_FEATURES, Engine

#: Columns of a canonical minute bar (``ts`` = bar start, UTC, as Alpaca's ``t``).
MINUTE_COLUMNS = ["ticker", "ts", "open", "high", "low", "close", "volume"]
#: Prefix of the intraday feature names in Feast (``m1_sma_5``): apart from the daily names.
PREFIX = "m1_"
#: The intraday view's as-of field: epoch seconds of the newest bar's *end* (ts + 60 s).
INTRADAY_TS = "intraday_ts"
BAR_SECONDS = 60
_NS = 1_000_000_000

# per-ticker scalars kept beside the engine state (name -> initial value)
_SCALARS = {
    "last_ns": np.iinfo(np.int64).min,  # newest applied bar start, epoch ns
    "bars": 0,  # bars applied
    "sess_day": -1,  # New York session day (days since epoch) of the running session bar
    "s_open": np.nan, "s_high": np.nan, "s_low": np.nan, "s_close": np.nan,  # newest close
    "s_volume": 0.0,
    "prev_vol": np.nan,  # volatility_20 of minute returns before the newest bar
    "vol_avg": np.nan,  # EWMA of volume before the newest bar
    "halted": 0,  # a halt event is open (no prints) for this ticker
}  # fmt: skip
#: The engine column the sigma rule reads (std of 1-bar returns over 20 bars).
VOL_COLUMN = "volatility_20"
VOLUME_ALPHA = 2.0 / 21.0  # EWMA of volume with a 20-bar span


#: Engine columns published online (the intraday view). All 40 default columns are computed
#: and snapshotted, but Feast's own SQLite store (``--online feast-sqlite``) writes one row per
#: (ticker, feature): at 500 tickers 40 columns cost ~330 ms a batch, these 8 (+ intraday_ts)
#: ~60 ms. stockray's store (``features.online_sqlite``) writes one row per ticker either way.
ONLINE_COLUMNS = ("returns_1", "log_returns_5", "rsi_14", "macd_12_26_9_hist",
                  "bollinger_20_2_pct_b", "atr_14", "volatility_20", "zscore_20")


def intraday_columns() -> list[str]:
    """Feast field names of the intraday view (online engine columns with :data:`PREFIX`)."""
    return [PREFIX + c for c in ONLINE_COLUMNS]


def ny_day(ns: np.ndarray) -> np.ndarray:
    """Trading session day (days since 1970-01-01 in New York time) of UTC epoch ns."""
    local = pd.DatetimeIndex(pd.to_datetime(ns, utc=True)).tz_convert("America/New_York")
    return (local.tz_localize(None).normalize().asi8 // (86400 * _NS)).astype(np.int64)


@dataclass
class Applied:
    """What one :meth:`MinuteEngine.update` applied."""

    bars: pd.DataFrame  # applied bars, time order, with ``row`` and every engine column
    prev: pd.DataFrame  # per applied bar, as before it: prev_close, prev_vol, vol_avg,
    # gap_ns (since the ticker's previous bar, -1 for its first) and same_session
    duplicates: int  # (ticker, ts) already applied (or repeated in the batch)
    late: int  # older than the ticker's newest applied bar (replayed, or out of order)


class MinuteEngine:
    """Engine state for a growing set of tickers, fed by minute microbatches.

    Args:
        tickers: tickers known up front (more are added as they first print).
        features: engine feature strings (default :data:`kernels.engine.DEFAULT_FEATURES`).
    """

    def __init__(self, tickers=(), features=DEFAULT_FEATURES):
        self.features = tuple(features)
        self.tickers: list[str] = []
        self.index: dict[str, int] = {}
        self.engine = Engine(self.features, n_tickers=1)
        self.columns = self.engine.columns
        self._vol_j = self.columns.index(VOL_COLUMN) if VOL_COLUMN in self.columns else None
        self.s = {k: np.empty(0, dtype=type(v) if isinstance(v, int) else float)
                  for k, v in _SCALARS.items()}
        self.last = np.empty((0, len(self.columns)))  # newest engine row per ticker
        self._add(list(tickers))

    @property
    def n(self) -> int:
        return len(self.tickers)

    def _add(self, new: list[str]) -> None:
        new = [t for t in dict.fromkeys(new) if t not in self.index]
        if not new:
            return
        for t in new:
            self.index[t] = len(self.tickers)
            self.tickers.append(t)
        if self.engine.n_tickers < self.n:  # the engine starts with one row for ticker 0
            self.engine.add_tickers(self.n - self.engine.n_tickers)
        for k, v in _SCALARS.items():
            self.s[k] = np.concatenate([self.s[k], np.full(len(new), v, self.s[k].dtype)])
        self.last = np.vstack([self.last, np.full((len(new), len(self.columns)), np.nan)])

    def update(self, batch: pd.DataFrame) -> Applied:
        """Apply a microbatch of minute bars (:data:`MINUTE_COLUMNS`; ``ts`` tz-aware UTC).

        Returns:
            The applied bars with their engine outputs, and what was skipped.
        """
        missing = [c for c in MINUTE_COLUMNS if c not in batch.columns]
        if missing:
            raise KeyError(f"minute batch lacks column(s) {missing}")
        # numpy throughout: per-batch pandas groupby/sort/concat cost more than the kernels
        n_in = len(batch)
        tick = batch["ticker"].to_numpy(object)
        ns = pd.DatetimeIndex(batch["ts"]).tz_convert("UTC").asi8
        self._add(sorted(t for t in pd.unique(tick) if t not in self.index))
        rows = np.fromiter((self.index[t] for t in tick), np.int64, n_in)
        # a (ticker, ts) repeated inside the batch: the last copy wins
        order = np.lexsort((np.arange(n_in), ns, rows))
        r_o, n_o = rows[order], ns[order]
        last_copy = np.ones(n_in, bool)
        last_copy[:-1] = (r_o[1:] != r_o[:-1]) | (n_o[1:] != n_o[:-1])
        keep = order[last_copy]
        dup_in_batch = n_in - len(keep)
        # A bar equal to the ticker's newest is a replay (duplicate); older is late.
        prior = self.s["last_ns"][rows[keep]]
        dup = int((ns[keep] == prior).sum()) + dup_in_batch
        late = int((ns[keep] < prior).sum())
        sel = keep[ns[keep] > prior]
        # time order, then ticker name (the order of the returned bars)
        name_rank = np.empty(self.n, np.int64)
        name_rank[np.argsort(np.array(self.tickers, dtype=object))] = np.arange(self.n)
        sel = sel[np.lexsort((name_rank[rows[sel]], ns[sel]))]
        m = len(sel)
        r, n = rows[sel], ns[sel]
        # round k ticks the k-th bar (in time) of every ticker that has one
        by_row = np.argsort(r, kind="stable")
        rs = r[by_row]
        first = np.r_[True, rs[1:] != rs[:-1]] if m else np.zeros(0, bool)
        start = np.maximum.accumulate(np.where(first, np.arange(m), 0)) if m else first
        rnd = np.empty(m, np.int64)
        rnd[by_row] = np.arange(m) - start
        ohlcv = {k: batch[k].to_numpy(float)[sel] for k in ("open", "high", "low", "close",
                                                              "volume")}
        out = np.empty((m, len(self.columns)))
        prev = {"prev_close": np.empty(m), "prev_vol": np.empty(m), "vol_avg": np.empty(m),
                "gap_ns": np.empty(m, np.int64), "same_session": np.empty(m, bool)}
        day = ny_day(n) if m else np.empty(0, np.int64)
        for k in range(int(rnd.max()) + 1 if m else 0):
            pos = np.flatnonzero(rnd == k)
            self._tick(pos, r[pos], n[pos], day[pos], {c: v[pos] for c, v in ohlcv.items()},
                       out, prev)
        index = batch.index[sel]
        bars = pd.DataFrame({"ticker": tick[sel], "ts": batch["ts"].iloc[sel].array,
                             **ohlcv, "ns": n, "row": r, "round": rnd}, index=index)
        bars = pd.concat([bars, pd.DataFrame(out, columns=self.columns, index=index)], axis=1)
        return Applied(bars, pd.DataFrame(prev, index=index), dup, late)

    def _tick(self, pos, rows, ns, day, bar, out, prev) -> None:
        """One round: rows are distinct tickers; results go to ``out[pos]``, ``prev[*][pos]``."""
        o, h, lo, c, v = (bar[k] for k in ("open", "high", "low", "close", "volume"))
        s = self.s
        known = s["last_ns"][rows] > np.iinfo(np.int64).min
        prev["prev_close"][pos] = s["s_close"][rows]
        prev["prev_vol"][pos] = s["prev_vol"][rows]
        prev["vol_avg"][pos] = s["vol_avg"][rows]
        prev["gap_ns"][pos] = np.where(known, ns - s["last_ns"][rows], -1)
        prev["same_session"][pos] = day == s["sess_day"][rows]
        res = self.engine.update(o, h, lo, c, v, rows=rows)
        # rule state for the *next* bar: this bar's volatility and volume average
        if self._vol_j is not None:
            s["prev_vol"][rows] = res[:, self._vol_j]
        va = s["vol_avg"][rows]
        s["vol_avg"][rows] = np.where(np.isnan(va), v, va + VOLUME_ALPHA * (v - va))
        new = day != s["sess_day"][rows]
        s["sess_day"][rows] = day
        s["s_open"][rows] = np.where(new, o, s["s_open"][rows])
        s["s_high"][rows] = np.where(new, h, np.fmax(s["s_high"][rows], h))
        s["s_low"][rows] = np.where(new, lo, np.fmin(s["s_low"][rows], lo))
        s["s_volume"][rows] = np.where(new, 0.0, s["s_volume"][rows]) + v
        s["s_close"][rows] = c
        s["last_ns"][rows] = ns
        s["bars"][rows] += 1
        self.last[rows] = res
        out[pos] = res

    def session_bars(self, tickers) -> pd.DataFrame:
        """The running session bar (open, high, low, close, volume so far) of ``tickers``,
        with ``ts`` = the newest minute bar's end (the as-of time of a refreshed daily row)."""
        rows = np.array([self.index[t] for t in tickers], dtype=np.int64)
        s = self.s
        return pd.DataFrame({
            "ticker": list(tickers),
            "ts": pd.to_datetime(s["last_ns"][rows] + BAR_SECONDS * _NS, utc=True),
            "open": s["s_open"][rows], "high": s["s_high"][rows], "low": s["s_low"][rows],
            "close": s["s_close"][rows], "volume": s["s_volume"][rows],
        })

    def intraday_rows(self, tickers) -> pd.DataFrame:
        """The intraday view's rows (newest engine values) of ``tickers``: ``ticker``, ``ts``
        (bar end), ``m1_*`` columns and :data:`INTRADAY_TS`."""
        rows = np.fromiter((self.index[t] for t in tickers), np.int64)
        end = self.s["last_ns"][rows] + BAR_SECONDS * _NS
        cols = {"ticker": list(tickers), "ts": pd.DatetimeIndex(end).tz_localize("UTC")}
        for c in ONLINE_COLUMNS:
            if c in self.columns:
                cols[PREFIX + c] = self.last[rows, self.columns.index(c)]
        cols[INTRADAY_TS] = end / _NS
        return pd.DataFrame(cols)

    # -- snapshot -------------------------------------------------------------------------

    def save(self, path: Path, meta: dict | None = None) -> None:
        """Write every ticker's engine state and scalars to ``path`` (atomic replace)."""
        state = self.engine.get_state()
        cols = {"ticker": pa.array(self.tickers, pa.string())}
        for k, v in self.s.items():
            cols[k] = pa.array(v)
        # fixed-size lists straight from the flat matrices (a list of rows costs ~30 ms)
        cols["state"] = pa.FixedSizeListArray.from_arrays(pa.array(state.ravel()),
                                                          state.shape[1])
        cols["last"] = pa.FixedSizeListArray.from_arrays(pa.array(self.last.ravel()),
                                                         self.last.shape[1])
        table = pa.table(cols).replace_schema_metadata({
            "stockray_features": json.dumps(list(self.features)),
            "stockray_meta": json.dumps(meta or {})})
        atomic_write_table(table, path)

    @classmethod
    def load(cls, path: Path) -> tuple[MinuteEngine, dict]:
        """Restore a :meth:`save` snapshot; returns the engine and the saved ``meta``."""
        table = read_table_once(path)
        md = table.schema.metadata or {}
        features = json.loads(md[b"stockray_features"])
        me = cls(table.column("ticker").to_pylist(), features)
        for k in _SCALARS:
            me.s[k] = table.column(k).to_numpy().astype(me.s[k].dtype)
        width = me.engine.get_state().shape[1]
        def flat(name):
            return table.column(name).combine_chunks().flatten().to_numpy()

        me.engine.set_state(flat("state").reshape(me.n, width))
        me.last = flat("last").reshape(me.n, len(me.columns)).copy()
        return me, json.loads(md.get(b"stockray_meta", b"{}"))
