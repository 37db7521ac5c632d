"""Stream benchmark: bar arrival -> online store -> readable by the serving reader, p50/p99,
at N tickers per minute batch; and how many bars/s the stream sustains.

Run: ``python -m bench.stream --tickers 500 --minutes 60 --out data/bench/stream.json``.

Per minute batch (synthetic random-walk bars for ``--tickers`` tickers, all in one batch):
``t0`` when the batch is handed to ``StreamRunner.process`` (arrival), then the intraday rows
are pushed to the real Feast SQLite online store, events are evaluated and the engine snapshot
is written; the batch counts as visible when a Feast online read (the serving reader's call,
``get_online_features``) of a random ticker of the batch returns that minute's
``intraday_ts``. Latency = engine + push (until the write committed) + that read; the whole
batch (events, engine snapshot too) is ``process_ms``. The daily-row refresh is measured apart
(``--daily``): it runs every few minutes, not per batch. Throughput = bars / wall time of the
whole run with no replay pacing. Prints the machine's load average next to the figures
(the box is shared: figures are noisy). Tests never assert these numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd


def synthetic_minutes(n_tickers: int, n_minutes: int, seed: int = 0) -> list[pd.DataFrame]:
    """One batch per minute: ``n_tickers`` random-walk bars from 2026-07-29 13:30 UTC."""
    rng = np.random.default_rng(seed)
    tickers = [f"S{i:04d}" for i in range(n_tickers)]
    c = 100 * np.exp(np.cumsum(rng.normal(0, 1e-3, (n_minutes, n_tickers)), axis=0))
    o = c * np.exp(rng.normal(0, 3e-4, c.shape))
    hi = np.maximum(o, c) * (1 + np.abs(rng.normal(0, 3e-4, c.shape)))
    lo = np.minimum(o, c) * (1 - np.abs(rng.normal(0, 3e-4, c.shape)))
    v = rng.integers(100, 10_000, c.shape).astype(float)
    start = pd.Timestamp("2026-07-29 13:30", tz="UTC")
    return [pd.DataFrame({"ticker": tickers, "ts": start + pd.Timedelta(minutes=m),
                          "open": o[m], "high": hi[m], "low": lo[m], "close": c[m],
                          "volume": v[m]}) for m in range(n_minutes)]


def _pct(x, q) -> float:
    return round(float(np.percentile(x, q)), 3)


def run(n_tickers: int, n_minutes: int, data_dir: Path, seed: int = 0) -> dict:
    from features.intraday import INTRADAY_VIEW
    from features.live import StreamConfig, StreamRunner
    from features.microbatch import INTRADAY_TS
    from features.store import apply_repo

    store = apply_repo(data_dir, data_dir / "offline")
    runner = StreamRunner(data_dir, StreamConfig(daily_every_min=0, push_daily=False),
                          store=store)
    batches = synthetic_minutes(n_tickers, n_minutes, seed)
    rng = np.random.default_rng(seed)
    ref = [f"{INTRADAY_VIEW}:{INTRADAY_TS}"]
    lat, proc = [], []
    wall0 = time.perf_counter()
    for b in batches:
        t0 = time.perf_counter()
        runner.process(b)
        t1 = time.perf_counter()
        want = (b["ts"].iloc[0] + pd.Timedelta(minutes=1)).timestamp()
        probe = b["ticker"].iloc[int(rng.integers(len(b)))]
        got = store.get_online_features(features=ref, entity_rows=[{"ticker": probe}]
                                        ).to_dict()[INTRADAY_TS][0]
        t2 = time.perf_counter()
        if got != want:
            raise AssertionError(f"{probe}: online intraday_ts {got} != {want}")
        # visible = the push committed (engine + push) plus the reader's confirming read;
        # events and the snapshot run after the push and are in process_ms only
        ms = runner.reports[-1].ms
        lat.append(ms["engine"] + ms["push_intraday"] + (t2 - t1) * 1e3)
        proc.append((t1 - t0) * 1e3)
    wall = time.perf_counter() - wall0
    steps = pd.DataFrame([r.ms for r in runner.reports])
    warm = slice(min(5, n_minutes - 1), None)  # the first batches pay numba/feast warm-up
    return {
        "tickers_per_batch": n_tickers, "minutes": n_minutes,
        "latency_ms_p50": _pct(lat[warm], 50), "latency_ms_p99": _pct(lat[warm], 99),
        "process_ms_p50": _pct(proc[warm], 50),
        "step_ms_p50": {k: _pct(steps[k].iloc[warm], 50) for k in steps.columns},
        "bars_per_s": round(n_tickers * n_minutes / wall, 1),
        "target_p50_ms": 50.0,
    }


def daily_refresh(n_tickers: int, data_dir: Path) -> dict:
    """Time of one session refresh of the served daily rows for ``n_tickers`` (lake needed:
    a synthetic 300-day history per ticker is written first)."""
    from features.lake import write_bars
    from features.live import StreamConfig, StreamRunner
    from features.store import apply_repo

    apply_repo(data_dir, data_dir / "offline")
    rng = np.random.default_rng(1)
    days = pd.bdate_range(end="2026-07-28", periods=300, tz="UTC") + pd.Timedelta(hours=20)
    parts = []
    for i in range(n_tickers):
        c = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, len(days))))
        parts.append(pd.DataFrame({"ticker": f"S{i:04d}", "ts": days, "open": c, "high": c,
                                   "low": c, "close": c, "volume": 1e6, "adj_factor": 1.0,
                                   "source": "bench", "ingested_at": days[-1]}))
    write_bars(pd.concat(parts), data_dir / "lake" / "bars")
    runner = StreamRunner(data_dir, StreamConfig(daily_every_min=0, macro=None))
    for b in synthetic_minutes(n_tickers, 3):
        runner.process(b)
    t = time.perf_counter()
    n = runner.refresh_daily(runner.engine.tickers)
    return {"tickers": n, "daily_refresh_s": round(time.perf_counter() - t, 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tickers", type=int, default=500)
    ap.add_argument("--minutes", type=int, default=60)
    ap.add_argument("--daily", type=int, default=50, help="tickers of the daily refresh (0: skip)")
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="sr-bench-stream-") as tmp:
        res = run(a.tickers, a.minutes, Path(tmp) / "a")
        if a.daily:
            res["daily"] = daily_refresh(a.daily, Path(tmp) / "b")
    res["loadavg"] = [round(x, 2) for x in os.getloadavg()]
    res["cpus"] = os.cpu_count()
    res["online_store"] = "feast sqlite (file), in-process reader"
    text = json.dumps(res, indent=1)
    print(text)
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(text)


if __name__ == "__main__":
    main()
