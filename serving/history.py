"""OfflineHistory: a ticker's last ``L`` feature rows as of a time, for sequence models.

The online store keeps one row per ticker; an LSTM / Transformer needs the window of the last
``L`` rows ending at the features being scored. Those rows live in the offline store that the
feature pipeline writes (``features.store.write_offline``: ``<data_dir>/offline/
features.parquet``, one row per ticker and ``ts``, replaced atomically).

**As of.** `OfflineHistory.window` returns the rows with ``ts <= as_of`` only — never a later
one — in ts order, left-padded with NaN when the ticker has fewer than ``L`` rows (the network
reads NaN as its training mean, exactly as ``training.sequence.build_windows`` pads).

**Cache.** A ticker's rows are read once (a pyarrow filter on ``ticker``) and kept per replica
(LRU, ``max_tickers``). The file is ``os.stat``-ed at most every ``check_every_s``; a changed
inode, mtime or size (a rewrite by the pipeline is an ``os.replace``: new inode) drops the
whole cache, so a re-run of ``stockray features`` is seen within ``check_every_s``.

Pure numpy / pyarrow: no Ray, no torch.
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from features.lake import read_table_once
from serving.errors import FeaturesUnavailableError
from serving.lookup import FileWatch

TS_COLUMN = "ts"


@dataclass(frozen=True)
class TickerHistory:
    """Every offline row of one ticker: ``ts_s`` ``(n,)`` float64 epoch seconds ascending and
    ``columns`` name -> ``(n,)`` float32 aligned to it."""

    ts_s: np.ndarray
    columns: dict[str, np.ndarray]


class OfflineHistory:
    """Reads the last ``L`` offline feature rows of a ticker as of a time; caches per ticker.

    Args:
        path: the offline feature table (``<data_dir>/offline/features.parquet``).
        check_every_s: at most one ``os.stat`` of ``path`` per this many seconds
            (0 = on every call).
        max_tickers: LRU bound of the per-ticker cache.
        clock: monotonic seconds, injectable for tests.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        check_every_s: float = 1.0,
        max_tickers: int = 4096,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = os.fspath(path)
        self.check_every_s = check_every_s
        self._max = max_tickers
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, TickerHistory] = OrderedDict()
        self._watch = FileWatch(self.path, check_every_s, clock=clock)
        self._seen = self._watch.generation
        self.reads = 0  # file reads (cache misses), for tests and logs
        self.invalidations = 0

    def _check_file(self) -> int:
        """Drop the cache if the file changed; returns the generation the cache now holds."""
        gen = self._watch.poll()
        with self._lock:
            if gen != self._seen:
                self._seen = gen
                self._cache.clear()
                self.invalidations += 1
        return gen

    def _load(self, ticker: str) -> TickerHistory:
        if not os.path.exists(self.path):
            raise FeaturesUnavailableError(
                f"the offline feature store {self.path} does not exist: sequence models read "
                "each ticker's history from it; run `stockray features` first"
            )
        # one file handle: the file may be replaced by a feature build while we read
        table = read_table_once(self.path, filters=[("ticker", "==", ticker)])
        self.reads += 1
        ts = table.column(TS_COLUMN).to_numpy()
        ts_s = np.asarray(ts, dtype="datetime64[ns]").astype(np.int64) / 1e9
        order = np.argsort(ts_s, kind="stable")
        cols = {}
        for name in table.column_names:
            if name in ("ticker", TS_COLUMN):
                continue
            col = table.column(name)
            try:
                cols[name] = np.asarray(col.to_numpy(zero_copy_only=False), np.float32)[order]
            except (TypeError, ValueError):
                continue  # non-numeric columns are no model input
        return TickerHistory(ts_s=ts_s[order], columns=cols)

    def history(self, ticker: str) -> TickerHistory:
        """Every offline row of ``ticker`` (cached until the file changes)."""
        gen = self._check_file()
        with self._lock:
            hit = self._cache.get(ticker)
            if hit is not None:
                self._cache.move_to_end(ticker)
                return hit
        got = self._load(ticker)
        with self._lock:
            if gen == self._seen:  # no change of the file was seen while we read it
                self._cache[ticker] = got
                while len(self._cache) > self._max:
                    self._cache.popitem(last=False)
        return got

    def window(
        self, ticker: str, as_of_s: float, feature_names: Sequence[str], length: int
    ) -> tuple[np.ndarray, float]:
        """The ``(length, F)`` float32 window of ``ticker`` ending at the last row ``<= as_of_s``.

        Args:
            ticker: upper-case symbol.
            as_of_s: epoch seconds; rows after it are never used.
            feature_names: columns, in the model's order.
            length: rows ``L``; fewer available rows are left-padded with NaN.

        Returns:
            ``(window, ts_s)``: the window and the epoch seconds of its last real row.

        Raises:
            FeaturesUnavailableError: no offline rows for the ticker at or before ``as_of_s``,
                or a feature column the offline store lacks.
        """
        h = self.history(ticker)
        k = int(np.searchsorted(h.ts_s, as_of_s, side="right"))  # rows [0, k) have ts <= as_of
        if k == 0:
            raise FeaturesUnavailableError(
                f"no offline feature history for {ticker} at or before the requested time: "
                "sequence models need the ticker's past rows; run `stockray features`"
            )
        missing = [n for n in feature_names if n not in h.columns]
        if missing:
            raise FeaturesUnavailableError(
                f"the offline feature store lacks {missing[:5]} that the sequence model of "
                f"{ticker} needs: rebuild features (`stockray features`) with this feature set"
            )
        lo = max(0, k - length)
        rows = np.stack([h.columns[n][lo:k] for n in feature_names], axis=1)  # (k - lo, F)
        if len(rows) < length:
            pad = np.full((length - len(rows), len(feature_names)), np.nan, np.float32)
            rows = np.concatenate([pad, rows])
        return np.ascontiguousarray(rows, dtype=np.float32), float(h.ts_s[k - 1])
