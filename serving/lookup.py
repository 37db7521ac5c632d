"""FeatureLookup: one ticker's online features, with a short TTL cache in front of the reader."""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from serving.errors import InvalidRequestError, ServingError, UnknownTickerError
from serving.readers import FEATURE_TS_KEY, FeatureReader


@dataclass(frozen=True)
class FeatureRow:
    """Online features of one ticker as of ``feature_ts`` (epoch seconds, UTC)."""

    ticker: str
    values: dict[str, float]
    feature_ts: float


class FeatureLookup:
    """Reads one ticker's features through ``reader``; caches rows for ``ttl_s`` seconds.

    Daily features change once a day, so a few seconds of cache cost nothing in freshness and
    take the store off the hot path under repeated requests. Unknown tickers are not cached
    (a materialize run may add them any moment).
    """

    def __init__(
        self,
        reader: FeatureReader,
        *,
        ttl_s: float = 5.0,
        max_entries: int = 4096,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._reader = reader
        self._ttl_s = ttl_s
        self._max_entries = max_entries
        self._clock = clock
        self._cache: OrderedDict[str, tuple[float, FeatureRow]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, ticker: str) -> FeatureRow:
        """Return the row of ``ticker`` (upper-cased).

        Raises:
            InvalidRequestError: empty ticker.
            UnknownTickerError: the store has no features for the ticker.
        """
        key = ticker.strip().upper()
        if not key:
            raise InvalidRequestError("ticker is empty: pass a symbol such as 'AAPL'")
        now = self._clock()
        if self._ttl_s > 0:
            with self._lock:
                hit = self._cache.get(key)
                if hit is not None and now - hit[0] < self._ttl_s:
                    self._cache.move_to_end(key)
                    return hit[1]
        raw = self._reader.read([key]).get(key)
        if raw is None:
            raise UnknownTickerError(
                f"no features for ticker {key!r}: it is not in the online store; check the "
                "symbol, or ingest it and run materialize"
            )
        values = {k: float(v) for k, v in raw.items() if k != FEATURE_TS_KEY}
        ts = float(raw.get(FEATURE_TS_KEY, math.nan))
        row = FeatureRow(ticker=key, values=values, feature_ts=ts)
        if self._ttl_s > 0:
            with self._lock:
                self._cache[key] = (now, row)
                self._cache.move_to_end(key)
                while len(self._cache) > self._max_entries:
                    self._cache.popitem(last=False)
        return row

    def get_many(self, tickers: list[str]) -> dict[str, FeatureRow | ServingError]:
        """Rows of many tickers (one reader call for the uncached ones); errors per ticker."""
        out: dict[str, FeatureRow | ServingError] = {}
        now = self._clock()
        todo = []
        for t in tickers:
            key = t.strip().upper()
            if not key:
                out[t] = InvalidRequestError("ticker is empty: pass a symbol such as 'AAPL'")
                continue
            with self._lock:
                hit = self._cache.get(key) if self._ttl_s > 0 else None
            if hit is not None and now - hit[0] < self._ttl_s:
                out[key] = hit[1]
            else:
                todo.append(key)
        if todo:
            raw = self._reader.read(todo)
            for key in todo:
                r = raw.get(key)
                if r is None:
                    out[key] = UnknownTickerError(
                        f"no features for ticker {key!r}: it is not in the online store; "
                        "check the symbol, or ingest it and run materialize"
                    )
                    continue
                row = FeatureRow(
                    ticker=key,
                    values={k: float(v) for k, v in r.items() if k != FEATURE_TS_KEY},
                    feature_ts=float(r.get(FEATURE_TS_KEY, math.nan)),
                )
                out[key] = row
                if self._ttl_s > 0:
                    with self._lock:
                        self._cache[key] = (now, row)
                        while len(self._cache) > self._max_entries:
                            self._cache.popitem(last=False)
        return out

    def rows(self, tickers: list[str]) -> list[dict[str, float]]:
        """Feature values of the known ``tickers`` (for explanation warm-up)."""
        got = self.get_many(tickers)
        return [r.values for r in got.values() if isinstance(r, FeatureRow)]
