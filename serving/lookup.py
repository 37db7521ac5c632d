"""FeatureLookup: one ticker's online features, cached in the replica until the online store
changes (or a TTL backstop passes).

Invalidation: every online write the project makes (``features.store.materialize`` /
``push_online``) replaces ``<data_dir>/feast/online_generation.json`` *after* the write has
committed. :class:`GenerationWatch` ``os.stat``-s that file at most every ``check_every_s``
(≈1 µs per check); a changed inode/mtime/size starts a new local generation. Cached rows carry
the generation current *before* their store read, and a row is served only while that
generation is still current, so a read that raced a materialize is never served after the
watch has seen the stamp move. Listeners (e.g. explanation warm-up) hear about each change.

Faults: every store read has a deadline (``read_timeout_s``). A read that fails or misses it
marks the store down (:meth:`FeatureLookup.store_health`, reported by ``/healthz``); tickers
read before are then served from their last good row flagged ``degraded`` (the response says
``stale``), others get ``UNAVAILABLE`` with advice. The next good read marks the store up.

Opt-in services: a request may name feature services beyond the price features (a model
trained with text asks for ``stockray_text_v1``: its bundle's ``extra.feature_set.services``).
The lookup then reads through a reader extended with those services (built on first use from
the base reader's ``with_services``, one store call for all of them), applies each service's
fill rule (``features.text.fill``) and caches the row per (ticker, services). Requests that
name none read exactly as before. Because the services come with each request, a lookup
replica serves a text model loaded after it started without a restart.
"""

from __future__ import annotations

import json
import logging
import math
import os
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, replace

from features.text.fill import apply_service_fills
from serving.errors import (
    FeatureStoreUnavailableError,
    FeaturesUnavailableError,
    InvalidRequestError,
    ServingError,
    UnknownTickerError,
)
from serving.metrics import ServingMetrics
from serving.readers import FEATURE_TS_KEY, FeatureReader

log = logging.getLogger(__name__)


class _DaemonPool:
    """A few daemon threads running store reads. A hung store holds at most ``n`` of them
    (later reads queue and miss their deadline), and being daemons they never block the
    process from exiting the way ``ThreadPoolExecutor``'s joined workers would."""

    def __init__(self, n: int) -> None:
        self._q: queue.SimpleQueue = queue.SimpleQueue()
        for i in range(n):
            threading.Thread(target=self._work, name=f"feature-read-{i}", daemon=True).start()

    def _work(self) -> None:
        while True:
            fut, fn, args = self._q.get()
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                fut.set_result(fn(*args))
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting caller
                fut.set_exception(exc)

    def submit(self, fn, *args) -> Future:
        fut: Future = Future()
        self._q.put((fut, fn, args))
        return fut


@dataclass(frozen=True)
class FeatureRow:
    """Online features of one ticker as of ``feature_ts`` (epoch seconds, UTC)."""

    ticker: str
    values: dict[str, float]
    feature_ts: float
    degraded: bool = False  # the last good row, served while the store does not answer


class FileWatch:
    """Notices when a file is replaced or rewritten, checking at most every ``check_every_s``.

    ``poll()`` returns a local generation: +1 for each observed change of the file's inode,
    mtime or size (``os.replace`` gives a new inode; mtime/size catch in-place rewrites).
    Thread-safe; one ``os.stat`` (≈1 µs) per check.

    Args:
        path: the watched file; it may not exist yet.
        check_every_s: at most one ``os.stat`` per this many seconds (0 = on every call).
        clock: monotonic seconds, injectable for tests.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        check_every_s: float = 0.1,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = os.fspath(path)
        self.check_every_s = check_every_s
        self._clock = clock
        self._lock = threading.Lock()
        self._sig = self._signature()
        self._next_check = clock() + check_every_s
        self.generation = 0  # local: +1 per observed change of the file
        self._changed()  # a subclass reads the file's first state the way it reads changes

    def _signature(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def _changed(self) -> None:
        """Hook run once at construction, then under the lock whenever a change is observed
        (before the generation moves)."""

    def poll(self) -> int:
        """The current local generation (checks the file if ``check_every_s`` has passed)."""
        now = self._clock()
        if now < self._next_check:
            return self.generation
        with self._lock:
            if now >= self._next_check:
                self._next_check = now + self.check_every_s
                sig = self._signature()
                if sig != self._sig:
                    self._sig = sig
                    self._changed()
                    self.generation += 1
        return self.generation


class GenerationWatch(FileWatch):
    """Watches the online store's generation stamp file; ``stamp`` is its last content.

    Args:
        path: the stamp (``features.store.online_generation_path``); it may not exist yet.
        check_every_s / clock: as :class:`FileWatch`.
    """

    stamp: dict

    def _read(self) -> dict:
        try:
            with open(self.path) as f:
                return json.load(f)
        except (OSError, ValueError):
            return {}

    def _changed(self) -> None:
        self.stamp = self._read()


class FeatureLookup:
    """Reads tickers' features through ``reader``; caches rows per online-store generation.

    Daily features change when materialize runs: ``watch`` sees that within
    ``watch.check_every_s`` and the cache is dropped. ``ttl_s`` stays as a backstop for writers
    that do not bump the stamp. Unknown tickers are not cached (a materialize run may add them
    any moment).

    Args:
        reader: the online store (``read(tickers)``).
        ttl_s: cache lifetime of a row (0 = no cache).
        max_entries: LRU bound of the cache.
        clock: monotonic seconds, injectable for tests.
        watch: the online-store generation stamp (None: TTL only).
        metrics: where cache hits and misses are counted (default: Ray's, when connected).
        read_timeout_s: deadline of one store read; past it the store counts as down.
        last_good_s: how long a ticker's last good row may stand in while the store is down.
    """

    def __init__(
        self,
        reader: FeatureReader,
        *,
        ttl_s: float = 5.0,
        max_entries: int = 4096,
        clock: Callable[[], float] = time.monotonic,
        watch: GenerationWatch | None = None,
        metrics: ServingMetrics | None = None,
        read_timeout_s: float = 2.0,
        last_good_s: float = 3 * 86400.0,
        reader_for: Callable[[tuple[str, ...]], FeatureReader] | None = None,
    ) -> None:
        self._reader = reader
        # services -> reader extended with them (None: this reader serves no opt-in service)
        self._reader_for = reader_for if reader_for is not None else getattr(
            reader, "with_services", None)
        self._readers: dict[tuple[str, ...], FeatureReader] = {(): reader}
        self._read_timeout_s = read_timeout_s
        self._last_good_s = last_good_s
        self._pool = _DaemonPool(4)
        self._last_good: OrderedDict[str, tuple[float, FeatureRow]] = OrderedDict()
        self._health = {"ok": True, "error": None, "down_since": None, "failed_reads": 0}
        self._metrics = metrics if metrics is not None else ServingMetrics()
        self._ttl_s = ttl_s
        self._max_entries = max_entries
        self._clock = clock
        self.watch = watch
        # ticker -> (read time, generation the read started in, row)
        self._cache: OrderedDict[str, tuple[float, int, FeatureRow]] = OrderedDict()
        self._lock = threading.Lock()
        self._generation = watch.generation if watch is not None else 0
        self._listeners: list[Callable[[dict], None]] = []
        self.invalidations = 0

    def add_listener(self, fn: Callable[[dict], None]) -> None:
        """Call ``fn(stamp)`` on a background thread whenever the online generation changes.

        ``stamp`` is the new stamp file's content (generation, written_at, writer, tickers).
        """
        self._listeners.append(fn)

    def _current_generation(self) -> int:
        if self.watch is None:
            return 0
        gen = self.watch.poll()
        if gen != self._generation:
            with self._lock:
                if gen == self._generation:
                    return gen
                self._generation = gen
                self._cache.clear()
                self.invalidations += 1
            stamp = dict(self.watch.stamp)
            for fn in self._listeners:
                threading.Thread(
                    target=self._notify, args=(fn, stamp), name="feature-generation", daemon=True
                ).start()
        return gen

    @staticmethod
    def _notify(fn: Callable[[dict], None], stamp: dict) -> None:
        try:
            fn(stamp)
        except Exception:  # a listener is an optimisation (warm-up), never a request failure
            log.exception("online generation listener failed")

    def _cached(self, key: str, now: float, gen: int) -> FeatureRow | None:
        if self._ttl_s <= 0:
            return None
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None and hit[1] == gen and now - hit[0] < self._ttl_s:
                self._cache.move_to_end(key)
                return hit[2]
        return None

    def _store(self, rows: list[tuple[str, FeatureRow]], now: float, gen: int) -> None:
        if self._ttl_s <= 0:
            return
        with self._lock:
            if gen != self._generation:
                return  # the store changed while we read: do not cache what we read
            for ckey, row in rows:
                self._cache[ckey] = (now, gen, row)
                self._cache.move_to_end(ckey)
            while len(self._cache) > self._max_entries:
                self._cache.popitem(last=False)

    @staticmethod
    def _row(key: str, raw: dict[str, float], services: tuple[str, ...] = ()) -> FeatureRow:
        ts = float(raw.get(FEATURE_TS_KEY, math.nan))
        values = {k: float(v) for k, v in raw.items() if k != FEATURE_TS_KEY}
        if services:  # the services' fill rules (days without text, ...), as in training
            values = apply_service_fills(values, services, ts)
        return FeatureRow(ticker=key, values=values, feature_ts=ts)

    def _reader_with(self, services: tuple[str, ...]) -> FeatureReader:
        got = self._readers.get(services)
        if got is not None:
            return got
        if self._reader_for is None:
            raise InvalidRequestError(
                f"the model needs feature service(s) {list(services)}, which this server's "
                "feature reader cannot read: serve it with features.store:FeastOnlineReader")
        try:
            got = self._reader_for(services)  # Feast registry read: once per service set
        except Exception as exc:  # noqa: BLE001 - the reason goes back to the caller
            log.warning("no reader for services %s: %s: %.300s", services,
                        type(exc).__name__, exc)
            raise FeaturesUnavailableError(
                f"feature service(s) {list(services)} cannot be read from the online store "
                f"({type(exc).__name__}): build them (`stockray news features` for the text "
                "service), then retry") from None
        with self._lock:
            self._readers[services] = got
        return got

    def get(self, ticker: str) -> FeatureRow:
        """Return the row of ``ticker`` (upper-cased).

        Raises:
            InvalidRequestError: empty ticker.
            UnknownTickerError: the store has no features for the ticker.
        """
        got = self.get_many([ticker])
        row = next(iter(got.values()))
        if isinstance(row, ServingError):
            raise row
        return row

    def get_many(
        self, tickers: list[str], services: tuple[str, ...] | list[str] = ()
    ) -> dict[str, FeatureRow | ServingError]:
        """Rows of many tickers (one reader call for the uncached ones); errors per ticker.

        ``services``: opt-in feature services to read too, their fill rules applied."""
        out: dict[str, FeatureRow | ServingError] = {}
        services = tuple(sorted(set(services)))
        suffix = "\x00" + "+".join(services) if services else ""
        gen = self._current_generation()  # before the read: see the class docstring
        now = self._clock()
        todo = []
        for t in tickers:
            key = t.strip().upper()
            if not key:
                out[t] = InvalidRequestError("ticker is empty: pass a symbol such as 'AAPL'")
                continue
            hit = self._cached(key + suffix, now, gen)
            if hit is not None:
                out[key] = hit
            else:
                todo.append(key)
        if todo:
            try:
                reader = self._reader_with(services)
            except ServingError as e:
                out.update(dict.fromkeys(todo, e))
                return out
            raw = self._read_store(todo, reader)
            if raw is None:
                self._serve_last_good(todo, out, suffix)
                self._metrics.cache(len(tickers) - len(todo), len(todo))
                return out
            fresh = []
            for key in todo:
                r = raw.get(key)
                if r is None:
                    out[key] = UnknownTickerError(
                        f"no features for ticker {key!r}: it is not in the online store; "
                        "check the symbol, or ingest it and run materialize"
                    )
                    continue
                out[key] = row = self._row(key, r, services)
                fresh.append((key + suffix, row))
            self._store(fresh, now, gen)
            self._keep_last_good(fresh)
        self._metrics.cache(len(tickers) - len(todo), len(todo))
        return out

    def _read_store(self, keys: list[str], reader: FeatureReader | None = None) -> dict | None:
        """The store's rows, or None when it failed or missed the deadline (health updated)."""
        reader = reader if reader is not None else self._reader
        try:
            raw = self._pool.submit(reader.read, keys).result(timeout=self._read_timeout_s)
        except FutureTimeout:
            self._mark_down(f"no answer within {self._read_timeout_s:g}s")
            return None
        except Exception as exc:  # noqa: BLE001 - any store failure degrades, reported
            # Only the type leaves the process (health is open; messages may hold paths).
            log.warning("feature store read failed: %s: %.300s", type(exc).__name__, exc)
            self._mark_down(type(exc).__name__)
            return None
        with self._lock:
            if not self._health["ok"]:
                log.warning("feature store answers again after %s", self._health["error"])
            self._health.update(ok=True, down_since=None)
        return raw

    def _mark_down(self, error: str) -> None:
        with self._lock:
            if self._health["ok"]:
                log.error("feature store unavailable: %s", error)
                self._health["down_since"] = time.time()
            self._health.update(ok=False, error=error,
                                failed_reads=self._health["failed_reads"] + 1)

    def _keep_last_good(self, rows: list[tuple[str, FeatureRow]]) -> None:
        now = time.monotonic()
        with self._lock:
            for ckey, row in rows:
                self._last_good[ckey] = (now, row)
                self._last_good.move_to_end(ckey)
            while len(self._last_good) > self._max_entries:
                self._last_good.popitem(last=False)

    def _serve_last_good(self, keys: list[str], out: dict, suffix: str = "") -> None:
        now = time.monotonic()
        err = self._health["error"]
        for key in keys:
            with self._lock:
                hit = self._last_good.get(key + suffix)
            if hit is not None and now - hit[0] <= self._last_good_s:
                out[key] = replace(hit[1], degraded=True)
            else:
                out[key] = FeatureStoreUnavailableError(
                    f"the online feature store is unavailable ({err}) and {key!r} has no "
                    "recent row in this replica: retry in a few seconds; operators: check the "
                    "online store (Redis/sqlite) and /healthz"
                )

    def store_health(self) -> dict:
        """``ok``, last ``error``, ``down_since`` (epoch s) and ``failed_reads`` so far."""
        with self._lock:
            return dict(self._health)

    def rows(self, tickers: list[str]) -> list[dict[str, float]]:
        """Feature values of the known ``tickers`` (for explanation warm-up)."""
        got = self.get_many(tickers)
        return [r.values for r in got.values() if isinstance(r, FeatureRow)]
