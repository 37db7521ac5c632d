"""The stream's processing loop, free of Ray: microbatch -> engine -> online store -> events.

Per microbatch (:meth:`StreamRunner.process`), in this order, so a crash at any point is
repaired by re-processing the batch after restart (every step before the snapshot is
idempotent):

1. ``MinuteEngine.update`` (drops bars already applied: idempotent by (ticker, ts));
2. the intraday view's rows of the tickers that printed, pushed online (Feast push);
3. event rules -> the lake's ``events`` table;
4. daily rows of the running session recomputed and pushed (``features.intraday``) for the
   event tickers at once (the targeted recompute) and for every streamed ticker each
   ``daily_every_min`` stream minutes and at the end of the source;
5. alerts: ``on_events(events)`` (default: each sink gets the bare event; the Ray app passes
   ``serving.alerts.on_event.PredictOnEvent``, which asks the served model through gRPC first);
6. the engine snapshot (``<data_dir>/stream/state.parquet``, atomic).

``ray_apps/stream.py`` runs this inside a long-lived Ray actor.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from features.events import AlertSink, EventRules, detect, event_dicts, write_events
from features.intraday import INTRADAY_VIEW, DailyHistory, push_intraday, session_rows
from features.microbatch import MinuteEngine
from features.pipeline_metrics import record_stream_lag
from kernels.engine import DEFAULT_FEATURES

log = logging.getLogger(__name__)


@dataclass
class StreamConfig:
    """What the stream does (paths come from ``Settings``)."""

    features: tuple[str, ...] = DEFAULT_FEATURES  #: engine features of the intraday view
    rules: EventRules = field(default_factory=EventRules)
    #: Refresh the served daily rows every this many stream minutes (0: only on events and at
    #: the end). Each refresh recomputes one daily row per ticker (~10 ms per ticker here).
    daily_every_min: int = 5
    push_daily: bool = True  #: refresh the served daily rows at all
    #: macro releases for the refreshed daily rows: "arch", "fred" (FRED first releases in
    #: the lake, by realtime_start) or None
    macro: str | None = "arch"


@dataclass
class BatchReport:
    """What one microbatch did (times in ms)."""

    applied: int
    duplicates: int
    late: int
    events: int
    daily_refreshed: int
    clock: str | None
    ms: dict = field(default_factory=dict)


def state_path(data_dir: Path) -> Path:
    """``<data_dir>/stream/state.parquet``: the engine snapshot a restart resumes from."""
    return data_dir / "stream" / "state.parquet"


class StreamRunner:
    """Feeds microbatches through the engine into the online store, raising events.

    Args:
        data_dir: the run's data dir (Feast repo under ``feast/``, lake under ``lake/``).
        config: :class:`StreamConfig`.
        sinks: alert sinks for the default event handler.
        on_events: replaces the default handler: called with the batch's event records.
        store: a ``feast.FeatureStore`` (default: ``features.store.open_store(data_dir)``).
    """

    def __init__(self, data_dir: Path, config: StreamConfig | None = None,
                 sinks: Sequence[AlertSink] = (),
                 on_events: Callable[[list[dict]], None] | None = None, store=None):
        from features.store import open_store

        self.data_dir = Path(data_dir)
        self.config = config or StreamConfig()
        self.sinks = list(sinks)
        self.on_events = on_events or self._send
        self.store = store if store is not None else open_store(self.data_dir)
        try:
            self.intraday_view = self.store.get_feature_view(INTRADAY_VIEW)
        except Exception as e:  # Feast raises its own FeatureViewNotFoundException
            raise RuntimeError(f"the Feast repo under {self.data_dir}/feast has no "
                               f"{INTRADAY_VIEW!r} view: run `stockray features` (it applies "
                               "the definitions) before streaming") from e
        self.path = state_path(self.data_dir)
        self.meta: dict = {"batches": 0, "bars": 0, "events": 0, "last_daily_ns": None}
        if self.path.exists():
            self.engine, self.meta = MinuteEngine.load(self.path)
            if self.engine.features != tuple(self.config.features):
                raise ValueError(f"snapshot {self.path} was written with other engine features"
                                 f" ({len(self.engine.features)}): move it away to start over")
            log.info("stream resumed from %s (%d tickers)", self.path, self.engine.n)
        else:
            self.engine = MinuteEngine(features=self.config.features)
        self._history: DailyHistory | None = None
        self.reports: list[BatchReport] = []

    @property
    def history(self) -> DailyHistory:
        if self._history is None:
            from features.settings import Settings

            self._history = DailyHistory(Settings(data_dir=self.data_dir).bars_dir,
                                         macro=self.config.macro)
        return self._history

    def _send(self, events: list[dict]) -> None:
        for e in events:
            for s in self.sinks:
                s.send(e)

    def process(self, batch: pd.DataFrame) -> BatchReport:
        """Run one microbatch through steps 1-6 of the module docstring."""
        ms: dict[str, float] = {}
        t = time.perf_counter()

        def lap(name):
            nonlocal t
            now = time.perf_counter()
            ms[name] = round((now - t) * 1e3, 3)
            t = now

        applied = self.engine.update(batch)
        lap("engine")
        touched = list(dict.fromkeys(applied.bars["ticker"]))
        if touched:
            push_intraday(self.store, self.engine.intraday_rows(touched), self.intraday_view)
        lap("push_intraday")
        events = detect(applied, self.engine, self.config.rules)
        write_events(events, self.data_dir)
        lap("events")
        refresh = list(dict.fromkeys(events["ticker"]))
        clock = int(applied.bars["ns"].max()) if touched else None
        last = self.meta.get("last_daily_ns")
        every = self.config.daily_every_min
        if clock is not None and every and (last is None or clock - last >= every * 60e9):
            refresh = list(self.engine.tickers)
            self.meta["last_daily_ns"] = clock
        n_daily = self.refresh_daily(refresh)
        lap("daily")
        if len(events):
            self.on_events(event_dicts(events))
        lap("alerts")
        self.meta["batches"] += 1
        self.meta["bars"] += len(applied.bars)
        self.meta["events"] += len(events)
        self.engine.save(self.path, self.meta)
        lap("snapshot")
        rep = BatchReport(len(applied.bars), applied.duplicates, applied.late, len(events),
                          n_daily, None if clock is None else pd.Timestamp(clock, tz="UTC")
                          .isoformat(), ms)
        self.reports.append(rep)
        return rep

    def refresh_daily(self, tickers: Sequence[str]) -> int:
        """Recompute and push the running session's daily rows of ``tickers``."""
        from features.store import push_online

        tickers = [t for t in tickers if t in self.engine.index
                   and self.engine.s["bars"][self.engine.index[t]] > 0]
        if not tickers or not self.config.push_daily:
            return 0
        rows = session_rows(self.history, self.engine.session_bars(tickers))
        return push_online(self.store, rows) if len(rows) else 0

    def finish(self) -> int:
        """End of the source: refresh every streamed ticker's daily row once more."""
        n = self.refresh_daily(self.engine.tickers)
        if self.engine.n:
            self.meta["last_daily_ns"] = int(np.max(self.engine.s["last_ns"]))
            self.engine.save(self.path, self.meta)
        return n

    async def run(self, source, max_batches: int | None = None) -> dict:
        """Process every batch of ``source.batches()`` (or the first ``max_batches``)."""
        n = 0
        kind = type(source).__name__
        async for batch in source.batches():
            rep = self.process(batch)
            # arrival (handed to process) -> intraday rows in the online store
            record_stream_lag((rep.ms["engine"] + rep.ms["push_intraday"]) / 1e3, kind)
            n += 1
            if max_batches is not None and n >= max_batches:
                break
        else:
            self.finish()
        return self.summary()

    def summary(self) -> dict:
        """Totals since the first snapshot (they survive restarts) and this process's batches."""
        return {**self.meta, "tickers": self.engine.n, "this_run": {
            "batches": len(self.reports),
            "applied": sum(r.applied for r in self.reports),
            "duplicates": sum(r.duplicates for r in self.reports),
            "late": sum(r.late for r in self.reports),
            "events": sum(r.events for r in self.reports)}}
