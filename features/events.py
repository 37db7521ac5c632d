"""Event rules on the minute stream, the lake's ``events`` table, and alert sinks.

Rules (:class:`EventRules`, evaluated on every applied bar, vectorised per batch):

- ``gap``: the bar opens more than ``gap_pct`` away from the ticker's previous close (across a
  session boundary too: the classic opening gap);
- ``halt``: no prints for ``halt_minutes`` inside a session: raised when other tickers'
  bars move the stream clock that far past the ticker's last bar, or, if nobody else printed,
  when the ticker resumes after such a hole (one event per halt);
- ``sigma_move``: ``|ln(c / prev c)|`` above ``sigma`` times the ticker's 20-bar volatility of
  minute returns *before* this bar (the bar must not inflate its own yardstick);
- ``volume_spike``: volume above ``volume_mult`` times the 20-bar EWMA volume before the bar.

Each event is one row of the ``events`` table (:data:`EVENT_COLUMNS`) under
``<data_dir>/lake/events/``: a batch's events are one parquet file named by the hash of their
ids and written atomically, so re-processing a batch after a crash rewrites the same file
(append-only, idempotent). Alerts (event + fresh prediction) go to :class:`AlertSink`\\ s; the
file sink here, webhooks/email later.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import pandas as pd
import pyarrow as pa

from features.lake import atomic_write_table
from features.microbatch import Applied, MinuteEngine, ny_day

log = logging.getLogger(__name__)
EVENT_RULES = ("gap", "halt", "sigma_move", "volume_spike")
EVENT_SCHEMA = pa.schema([
    ("event_id", pa.string()), ("ticker", pa.string()), ("ts", pa.timestamp("ns", tz="UTC")),
    ("rule", pa.string()), ("value", pa.float64()), ("threshold", pa.float64()),
    ("detail", pa.string()), ("detected_at", pa.timestamp("ns", tz="UTC")),
])  # fmt: skip
EVENT_COLUMNS = EVENT_SCHEMA.names
_MIN = 60_000_000_000  # ns


@dataclass(frozen=True)
class EventRules:
    """Thresholds of the stream's event rules (see the module docstring)."""

    gap_pct: float = 0.01  # 1 %: several times a typical 1-minute move of a large cap
    halt_minutes: int = 5  # a liquid name never goes 5 minutes without a print in session
    sigma: float = 6.0  # 6 sigma of minute returns: a few a week per name, not every hour
    volume_mult: float = 8.0  # 8x the recent average minute volume


def _rows(ticker, ns, rule, value, threshold, detail) -> list[dict]:
    return [{"ticker": t, "ns": int(n), "rule": rule, "value": float(v),
             "threshold": float(threshold), "detail": d}
            for t, n, v, d in zip(ticker, ns, value, detail, strict=True)]


def detect(applied: Applied, engine: MinuteEngine, rules: EventRules,
           clock_ns: int | None = None) -> pd.DataFrame:
    """Events raised by one applied batch (:data:`EVENT_COLUMNS`).

    Args:
        applied: what ``engine.update`` just applied.
        engine: the engine after the update (its halt flags are set and cleared here).
        clock_ns: the stream clock (default: the newest bar of the batch).
    """
    b, p = applied.bars, applied.prev
    out: list[dict] = []
    if len(b):
        t, ns = b["ticker"].to_numpy(), b["ns"].to_numpy()
        o, c, v = (b[k].to_numpy(float) for k in ("open", "close", "volume"))
        pc, pv, va = (p[k].to_numpy(float) for k in ("prev_close", "prev_vol", "vol_avg"))
        gap_ns = p["gap_ns"].to_numpy(np.int64)
        same = p["same_session"].to_numpy(bool)
        with np.errstate(invalid="ignore", divide="ignore"):
            g = o / pc - 1.0
            m = np.where(np.isfinite(g), np.abs(g) > rules.gap_pct, False)
            kind = np.where(same, "intraday", "opening")
            out += _rows(t[m], ns[m], "gap", g[m], rules.gap_pct, kind[m])
            r = np.log(c / pc)
            z = np.abs(r) / pv
            m = np.isfinite(z) & (pv > 0) & same & (z > rules.sigma)
            out += _rows(t[m], ns[m], "sigma_move", z[m], rules.sigma,
                         [f"ret={x:.5f}" for x in r[m]])
            x = v / va
            m = np.isfinite(x) & np.isfinite(pv) & (va > 0) & (x > rules.volume_mult)
            out += _rows(t[m], ns[m], "volume_spike", x[m], rules.volume_mult,
                         [f"volume={int(y)}" for y in v[m]])
        rows = b["row"].to_numpy()
        halted = engine.s["halted"][rows].astype(bool)
        mins = gap_ns / _MIN - 1  # whole minutes without a print before this bar
        m = same & ~halted & (mins >= rules.halt_minutes)
        out += _rows(t[m], ns[m], "halt", mins[m], rules.halt_minutes,
                     ["resumed after silence"] * int(m.sum()))
        engine.s["halted"][rows] = 0
        clock_ns = int(ns.max()) if clock_ns is None else clock_ns
    if clock_ns is not None and engine.n:
        s = engine.s
        silent = (clock_ns - s["last_ns"]) / _MIN - 1
        m = ((s["bars"] > 0) & (s["halted"] == 0) & (silent >= rules.halt_minutes)
             & (s["sess_day"] == ny_day(np.array([clock_ns]))[0]))
        idx = np.flatnonzero(m)
        s["halted"][idx] = 1
        out += _rows([engine.tickers[i] for i in idx], s["last_ns"][idx] + _MIN, "halt",
                     silent[idx], rules.halt_minutes, ["no prints"] * len(idx))
    return _frame(out)


def _frame(rows: list[dict]) -> pd.DataFrame:
    f = pd.DataFrame(rows, columns=["ticker", "ns", "rule", "value", "threshold", "detail"])
    f["ts"] = pd.to_datetime(f["ns"].astype("int64"), utc=True)
    f["event_id"] = [hashlib.sha1(f"{a}|{b}|{c}".encode()).hexdigest()[:16]
                     for a, b, c in zip(f["rule"], f["ticker"], f["ns"], strict=True)]
    f["detected_at"] = pd.Timestamp.now(tz="UTC")
    return f[EVENT_COLUMNS].sort_values(["ts", "ticker", "rule"]).reset_index(drop=True)


def events_dir(data_dir: Path) -> Path:
    """``<data_dir>/lake/events``."""
    return data_dir / "lake" / "events"


def write_events(events: pd.DataFrame, data_dir: Path) -> Path | None:
    """Append a batch's events to the lake (one atomic file per batch, named by content)."""
    if events.empty:
        return None
    key = hashlib.sha1("".join(sorted(events["event_id"])).encode()).hexdigest()[:20]
    path = events_dir(data_dir) / f"events-{key}.parquet"
    atomic_write_table(pa.Table.from_pandas(events[EVENT_COLUMNS], schema=EVENT_SCHEMA,
                                            preserve_index=False), path)
    return path


def read_events(data_dir: Path) -> pd.DataFrame:
    """Every recorded event, one row per ``event_id``, in time order."""
    parts = sorted(events_dir(data_dir).glob("events-*.parquet"))
    if not parts:
        return EVENT_SCHEMA.empty_table().to_pandas()
    frame = pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True)
    frame = frame.drop_duplicates("event_id", keep="first")
    return frame.sort_values(["ts", "ticker", "rule"]).reset_index(drop=True)


@runtime_checkable
class AlertSink(Protocol):
    """Where alerts go: ``send(alert)`` with an event record (dict) plus, when a prediction
    could be made, ``prediction`` (horizon -> predicted return) and ``feature_timestamp``."""

    def send(self, alert: dict) -> None: ...


class FileAlertSink:
    """Appends each alert as one JSON line to ``path`` (locked: several writers may share it)."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def send(self, alert: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(alert, default=str, sort_keys=True) + "\n"
        with open(self.path, "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            f.write(line)


class LogAlertSink:
    """Logs each alert at WARNING (``features.events`` logger)."""

    def send(self, alert: dict) -> None:
        log.warning("stream event %s %s at %s: %s", alert.get("rule"), alert.get("ticker"),
                    alert.get("ts"), alert.get("prediction"))


def event_dicts(events: pd.DataFrame) -> list[dict]:
    """Event rows as plain dicts (ISO times), what sinks receive."""
    out = []
    for r in events.to_dict("records"):
        r["ts"] = pd.Timestamp(r["ts"]).isoformat()
        r["detected_at"] = pd.Timestamp(r["detected_at"]).isoformat()
        out.append(r)
    return out
