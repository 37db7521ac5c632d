"""Stream benchmark: bar arrival -> online store -> readable by the serving reader, p50/p99,
at N tickers per minute batch, per online store, quiet and under read load; bars/s sustained.

Run: ``python -m bench.stream --tickers 500 --minutes 60 --out data/bench/stream.json``
(``--online sqlite,feast-sqlite,redis``: the paths measured, side by side in one run; redis only
when ``redis-server`` is on PATH).

Per minute batch (synthetic random-walk bars for ``--tickers`` tickers, all in one batch):
``t0`` when the batch is handed to ``StreamRunner.process`` (arrival), then the intraday rows
are pushed to the online store, events are evaluated and the engine snapshot is written; the
batch counts as visible when a Feast online read (the serving reader's call,
``get_online_features``) of a random ticker of the batch returns that minute's
``intraday_ts``. Latency = engine + push (until the write committed) + that read; the whole
batch (events, engine snapshot too) is ``process_ms``. Under ``load``, a second process reads
50 tickers' intraday rows from the same store in a loop (a serving replica) for the whole run;
its read p50/p99 are reported too. The daily-row refresh is measured apart (``--daily``): it
runs every few minutes, not per batch. Throughput = bars / wall time of the whole run with no
replay pacing. Prints the machine's load average next to the figures (the box is shared:
figures are noisy). Tests never assert these numbers.
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


def _reader(repo: str, tickers: list[str], stop, out) -> None:
    """A serving replica's reads, in its own process, until ``stop`` is set."""
    from feast import FeatureStore

    from features.intraday import INTRADAY_VIEW
    from features.microbatch import INTRADAY_TS, intraday_columns

    store = FeatureStore(repo_path=repo)
    refs = [f"{INTRADAY_VIEW}:{c}" for c in [*intraday_columns(), INTRADAY_TS]]
    rows = [{"ticker": t} for t in tickers]
    store.get_online_features(features=refs, entity_rows=rows).to_dict()
    out.put("ready")
    ms = []
    while not stop.is_set():
        t = time.perf_counter()
        store.get_online_features(features=refs, entity_rows=rows).to_dict()
        ms.append((time.perf_counter() - t) * 1e3)
    out.put(ms)


def run(n_tickers: int, n_minutes: int, data_dir: Path, seed: int = 0, online: str = "sqlite",
        redis_address: str = "127.0.0.1:6379", load: bool = False) -> dict:
    import multiprocessing as mp

    from features.intraday import INTRADAY_VIEW
    from features.live import StreamConfig, StreamRunner
    from features.microbatch import INTRADAY_TS
    from features.store import apply_repo

    store = apply_repo(data_dir, data_dir / "offline", online=online,
                       redis_address=redis_address)
    runner = StreamRunner(data_dir, StreamConfig(daily_every_min=0, push_daily=False),
                          store=store)
    batches = synthetic_minutes(n_tickers, n_minutes, seed)
    rng = np.random.default_rng(seed)
    ref = [f"{INTRADAY_VIEW}:{INTRADAY_TS}"]
    lat, proc = [], []
    reader = None
    if load:
        runner.process(batches[0])  # the reader starts on a populated store
        ctx = mp.get_context("spawn")
        stop, out = ctx.Event(), ctx.Queue()
        reader = ctx.Process(target=_reader, args=(str(data_dir / "feast"),
                                                   list(batches[0]["ticker"][:50]), stop, out))
        reader.start()
        if out.get(timeout=300) != "ready":  # its imports and first read, before timing
            raise RuntimeError("the reader process did not start")
        batches = batches[1:]
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
            raise AssertionError(f"{online}: {probe}: online intraday_ts {got} != {want}")
        # visible = the push committed (engine + push) plus the reader's confirming read;
        # events and the snapshot run after the push and are in process_ms only
        ms = runner.reports[-1].ms
        lat.append(ms["engine"] + ms["push_intraday"] + (t2 - t1) * 1e3)
        proc.append((t1 - t0) * 1e3)
    wall = time.perf_counter() - wall0
    res = {}
    if reader is not None:
        stop.set()
        reads = out.get(timeout=60)
        reader.join(timeout=30)
        res["reader_50_tickers_ms_p50"] = _pct(reads, 50) if reads else None
        res["reader_50_tickers_ms_p99"] = _pct(reads, 99) if reads else None
        res["reader_calls"] = len(reads)
    steps = pd.DataFrame([r.ms for r in runner.reports[-len(batches):]])
    warm = slice(min(5, len(batches) - 1), None)  # the first batches pay numba/feast warm-up
    return {
        "online": online, "load": "1 reader process, 50 tickers per read" if load else None,
        "tickers_per_batch": n_tickers, "minutes": len(batches),
        "latency_ms_p50": _pct(lat[warm], 50), "latency_ms_p99": _pct(lat[warm], 99),
        "process_ms_p50": _pct(proc[warm], 50),
        "step_ms_p50": {k: _pct(steps[k].iloc[warm], 50) for k in steps.columns},
        "step_ms_p99": {k: _pct(steps[k].iloc[warm], 99) for k in ("engine", "push_intraday")},
        "bars_per_s": round(n_tickers * len(batches) / wall, 1),
        "target_p50_ms": 50.0, **res,
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
    from features.redis_server import RedisServer, redis_binary

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tickers", type=int, default=500)
    ap.add_argument("--minutes", type=int, default=60)
    ap.add_argument("--online", default="sqlite,feast-sqlite,redis",
                    help="online stores to compare (comma-separated)")
    ap.add_argument("--no-load", action="store_true", help="skip the runs under read load")
    ap.add_argument("--redis-port", type=int, default=6391)
    ap.add_argument("--daily", type=int, default=50, help="tickers of the daily refresh (0: skip)")
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()
    res: dict = {"runs": [], "skipped": {}}
    with tempfile.TemporaryDirectory(prefix="sr-bench-stream-") as tmp:
        for online in [o.strip() for o in a.online.split(",") if o.strip()]:
            if online == "redis" and redis_binary() is None:
                res["skipped"]["redis"] = "redis-server not on PATH"
                continue
            for load in (False, True)[: 1 if a.no_load else 2]:
                run_dir = Path(tmp) / f"{online}-{'load' if load else 'quiet'}"
                if online == "redis":
                    with RedisServer(a.redis_port, workdir=run_dir / "redis") as server:
                        r = run(a.tickers, a.minutes, run_dir, online=online,
                                redis_address=server.address, load=load)
                else:
                    r = run(a.tickers, a.minutes, run_dir, online=online, load=load)
                print(json.dumps({k: r[k] for k in ("online", "load", "latency_ms_p50",
                                                    "latency_ms_p99", "bars_per_s")}),
                      flush=True)
                res["runs"].append(r)
        base = {r["load"] is not None: r for r in res["runs"] if r["online"] == "feast-sqlite"}
        for r in res["runs"]:
            b = base.get(r["load"] is not None)
            if b is not None:
                r["p50_vs_feast_sqlite"] = round(r["latency_ms_p50"] / b["latency_ms_p50"], 3)
        if a.daily:
            res["daily"] = daily_refresh(a.daily, Path(tmp) / "daily")
    res["loadavg"] = [round(x, 2) for x in os.getloadavg()]
    res["cpus"] = os.cpu_count()
    text = json.dumps(res, indent=1)
    print(text)
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(text)


if __name__ == "__main__":
    main()
