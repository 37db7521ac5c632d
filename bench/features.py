"""Feature pipeline benchmark: in-memory vs streaming (one process) vs streaming (Ray Data).

Run: ``python -m bench.features --out bench/results/features.json`` (~15 minutes on 2 cores;
``--quick`` for a 200-ticker synthetic universe instead of 2,000).

Universes (each written to a temporary lake first, outside the timings):

- ``skfolio``: the 20 stocks of skfolio's ``sp500_dataset.csv.gz`` (1990..2022, ~166k bars)
  plus its S&P 500 index (``features.sources.skfolio_bars``). Close-only data: OHLC are
  all the adjusted close and volume 0, so range/volume features are degenerate (constant or
  NaN); the work per row is the same.
- ``synthetic``: 2,000 tickers x 10 years of business days (5.04M bars), seeded random walks
  with OHLCV, plus an index.

Paths, each lake -> contract -> features and labels -> offline tables (``features.parquet``,
``labels.parquet``, ``panel/``), i.e. ``stockray features`` without Feast:

- ``memory``: the old path: ``read_bars`` -> ``check_bars`` -> ``build_features_local`` ->
  ``write_offline``; the whole universe in one frame;
- ``stream_local``: ``features.stream.build_offline(engine="local")``: ticker chunks in this
  process, parts on disk, DuckDB ranks;
- ``stream_ray``: the same with ``engine="ray"`` (a Ray Data task per chunk), ``ray.init``
  reported apart as ``ray_init_s``.

Each (universe, path) runs in a fresh subprocess. Reported per run: seconds, rows/s, peak RSS
of the process tree (the worker and, for Ray, every Ray process it started: sampled at 5 Hz)
and its increase over the pre-run baseline; the 1-minute load average before and after (the
machine is shared: timings are noisy). Ratios are over ``memory``. Tests never assert these
numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd


def synthetic_bars(n_tickers: int, years: int = 10, seed: int = 0) -> pd.DataFrame:
    """Seeded random-walk OHLCV for ``n_tickers`` stocks plus an index (``^GSPC``)."""
    from features.sources import MARKET_TICKER

    rng = np.random.default_rng(seed)
    ts = pd.bdate_range("2005-01-03", periods=252 * years, tz="UTC")
    n = len(ts)
    names = [f"T{i:04d}" for i in range(n_tickers)] + [MARKET_TICKER]
    k = len(names)
    logc = np.log(50.0) + np.cumsum(rng.normal(0, 0.02, (k, n)), axis=1)
    close = np.exp(logc)
    open_ = close * np.exp(rng.normal(0, 0.005, (k, n)))
    high = np.maximum(open_, close) * (1 + rng.uniform(0, 0.01, (k, n)))
    low = np.minimum(open_, close) * (1 - rng.uniform(0, 0.01, (k, n)))
    vol = rng.integers(100_000, 1_000_000, (k, n)).astype(float)
    return pd.DataFrame({
        "ticker": np.repeat(names, n), "ts": np.tile(ts, k), "open": open_.ravel(),
        "high": high.ravel(), "low": low.ravel(), "close": close.ravel(), "volume": vol.ravel(),
        "adj_factor": 1.0})


class PeakRss:
    """Samples the RSS of this process and all its descendants every ``interval`` seconds."""

    def __init__(self, interval: float = 0.2):
        import psutil

        self.proc = psutil.Process()
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> int:
        total = 0
        for p in [self.proc, *self.proc.children(recursive=True)]:
            try:
                total += p.memory_info().rss
            except Exception:  # noqa: BLE001, S110 — a process that just ended
                pass
        return total

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.sample())
            self._stop.wait(self.interval)

    def __enter__(self):
        self.peak = self.sample()
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, self.sample())


def _bars_for(universe: str, n_tickers: int) -> pd.DataFrame:
    if universe == "skfolio":
        from features.sources import skfolio_bars  # the one reader of the skfolio CSVs

        return skfolio_bars()
    return synthetic_bars(n_tickers)


def make_lake(universe: str, n_tickers: int, root: Path) -> Path:
    """Write the universe's bars as a lake under ``root``; returns its ``bars/`` dir."""
    from features.lake import write_bars

    bars = _bars_for(universe, n_tickers).assign(source="bench",
                                                 ingested_at=pd.Timestamp("2024-01-01", tz="UTC"))
    bars_dir = root / universe / "lake" / "bars"
    write_bars(bars, bars_dir)
    return bars_dir


PATHS = ("memory", "stream_local", "stream_ray")


def worker(path: str, bars_dir: Path, memory_gb: float) -> dict:
    """One measured run (in its own process): lake -> offline tables."""
    import kernels
    from features.contracts import check_bars
    from features.lake import count_rows, read_bars
    from features.macro import macro_releases
    from features.pipeline import build_features_local
    from features.store import write_offline
    from features.stream import build_offline

    kernels.warmup()
    macro = macro_releases()
    root = bars_dir.parents[1]
    out = {"path": path, "rows_in": count_rows(bars_dir),
           "tickers": len(list(bars_dir.glob("ticker=*"))) - 1,
           "load_1m_before": round(os.getloadavg()[0], 2)}
    if path == "stream_ray":
        import ray

        t = time.perf_counter()
        ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False,
                 log_to_driver=False)
        out["ray_init_s"] = round(time.perf_counter() - t, 2)
    with PeakRss() as mem:
        base = mem.peak
        t = time.perf_counter()
        if path == "memory":
            steps = {}
            c = check_bars(read_bars(bars_dir), run_id="bench")
            steps["read_and_check"] = round(time.perf_counter() - t, 2)
            frame = build_features_local(c.bars, macro=macro)
            steps["features"] = round(time.perf_counter() - t - sum(steps.values()), 2)
            write_offline(frame, root / f"offline_{path}")
            steps["write"] = round(time.perf_counter() - t - sum(steps.values()), 2)
            rows_out = len(frame)
        else:
            res = build_offline(bars_dir, root / f"offline_{path}", root / f"work_{path}",
                                engine=path.removeprefix("stream_"), memory_gb=memory_gb,
                                macro=macro, run_id="bench")
            steps = res.seconds
            rows_out = res.stats["rows"]
            out.update({"chunks": res.chunks, "chunk_rows": res.chunk_rows,
                        "memory_gb": memory_gb})
        secs = time.perf_counter() - t
    out.update({"seconds": round(secs, 2), "steps_s": steps, "rows_out": rows_out,
                "rows_per_s": round(out["rows_in"] / secs),
                "peak_rss_gb": round(mem.peak / 1e9, 2),
                "rss_increase_gb": round((mem.peak - base) / 1e9, 2),
                "load_1m_after": round(os.getloadavg()[0], 2)})
    if path == "stream_ray":
        import ray

        ray.shutdown()
    return out


def _run(path: str, bars_dir: Path, memory_gb: float) -> dict:
    cmd = [sys.executable, "-m", "bench.features", "--worker", path, str(bars_dir),
           "--memory-gb", str(memory_gb)]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False,
                         cwd=Path(__file__).parents[1])
    lines = [x for x in res.stdout.splitlines() if x.startswith("{")]
    if res.returncode != 0 or not lines:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{res.stdout[-2000:]}\n{res.stderr[-4000:]}")
    return json.loads(lines[-1])


def _same_output(root: Path) -> bool:
    """The three paths wrote identical features/labels tables."""
    import pyarrow.parquet as pq

    ok = True
    for name in ("features.parquet", "labels.parquet"):
        ref = pq.read_table(root / "offline_memory" / name)
        for p in PATHS[1:]:
            ok &= ref.equals(pq.read_table(root / f"offline_{p}" / name))
    return bool(ok)


def main() -> None:
    import shutil
    import tempfile

    from features.settings import Settings

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("bench/results/features.json"))
    ap.add_argument("--quick", action="store_true", help="200 synthetic tickers, not 2,000")
    ap.add_argument("--tickers", type=int, default=None)
    ap.add_argument("--memory-gb", type=float, default=Settings().features_memory_gb,
                    help="budget of the streaming paths (default: the settings default)")
    ap.add_argument("--universes", nargs="+", default=["skfolio", "synthetic"])
    ap.add_argument("--paths", nargs="+", default=list(PATHS))
    ap.add_argument("--worker", nargs=2, metavar=("PATH", "BARS_DIR"))
    a = ap.parse_args()
    if a.worker:
        print(json.dumps(worker(a.worker[0], Path(a.worker[1]), a.memory_gb)), flush=True)
        return
    n = a.tickers or (200 if a.quick else 2000)
    tmp = Path(tempfile.mkdtemp(prefix="bench-features-"))
    runs, ratios, same = [], {}, {}
    try:
        for universe in a.universes:
            t = time.perf_counter()
            bars_dir = make_lake(universe, n, tmp)
            print(f"{universe}: lake written in {time.perf_counter() - t:.1f} s", flush=True)
            for path in a.paths:
                r = {"universe": universe, **_run(path, bars_dir, a.memory_gb)}
                runs.append(r)
                print(f"{universe:9s} {path:12s} {r['rows_in']:>9,d} rows  {r['seconds']:7.2f} s"
                      f"  {r['rows_per_s']:>9,d} rows/s  peak {r['peak_rss_gb']:.2f} GB "
                      f"(+{r['rss_increase_gb']:.2f})  load {r['load_1m_before']}"
                      + (f"  ray.init {r['ray_init_s']} s" if "ray_init_s" in r else ""),
                      flush=True)
            if set(PATHS) <= set(a.paths):
                same[universe] = _same_output(bars_dir.parents[1])
                by = {r["path"]: r for r in runs if r["universe"] == universe}
                m = by["memory"]
                ratios[universe] = {
                    f"{p}_over_memory": {
                        "time": round(by[p]["seconds"] / m["seconds"], 2),
                        **({"time_incl_ray_init": round(
                            (by[p]["seconds"] + by[p]["ray_init_s"]) / m["seconds"], 2)}
                           if "ray_init_s" in by[p] else {}),
                        "peak_rss": round(by[p]["peak_rss_gb"] / m["peak_rss_gb"], 2)}
                    for p in PATHS[1:]}
                print(f"{universe}: {ratios[universe]}; identical output: {same[universe]}",
                      flush=True)
            shutil.rmtree(bars_dir.parents[1], ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    doc = {"bench": "features", "machine": {"cpus": os.cpu_count(),
                                            "python": platform.python_version()},
           "note": "lake -> offline tables (features, labels, panel), no Feast; skfolio is "
                   "close-only: OHLC = close, volume = 0",
           "memory_gb": a.memory_gb, "runs": runs, "ratios": ratios,
           "identical_output": same}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(doc, indent=2))
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
