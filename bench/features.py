"""Feature pipeline benchmark: Ray Data path vs one-process path, side by side.

Run: ``python -m bench.features --out bench/results/features.json`` (~10 minutes on 2 cores;
``--quick`` for a 200-ticker synthetic universe instead of 2,000).

Universes:

- ``skfolio``: the 20 stocks of skfolio's ``sp500_dataset.csv.gz`` (1990..2022, ~166k bars)
  plus its S&P 500 index, read straight from the installed wheel's CSVs (skfolio itself is
  never imported). Close-only data: OHLC are all set to the adjusted close and volume to 0,
  so range/volume features are degenerate (constant or NaN); the work per row is the same.
- ``synthetic``: 2,000 tickers × 10 years of business days (5.04M bars), seeded random walks
  with OHLCV, plus an index.

Each (universe, engine) runs in a fresh subprocess. Reported per run: build seconds (the
``build_features_*`` call; for Ray, ``ray.init`` is reported apart as ``ray_init_s``), rows/s,
peak RSS of the process tree (the worker and, for Ray, every Ray process it started: sampled
at 5 Hz) and its increase over the pre-build baseline. Ratios are ray / local. Tests never
assert these numbers.
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
        from training.walkforward import skfolio_bars  # the one reader of the skfolio CSVs

        return skfolio_bars()
    return synthetic_bars(n_tickers)


def worker(universe: str, engine: str, n_tickers: int) -> dict:
    """One measured run (in its own process)."""
    from features.pipeline import build_features_local, build_features_ray

    bars = _bars_for(universe, n_tickers)
    import kernels
    from features.macro import macro_releases

    kernels.warmup()
    macro = macro_releases()
    build_features_local(bars[bars["ticker"].isin(bars["ticker"].unique()[:2])], macro=macro)
    out = {"universe": universe, "engine": engine, "rows_in": len(bars),
           "tickers": int(bars["ticker"].nunique()) - 1}
    if engine == "ray":
        import ray

        t = time.perf_counter()
        ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False,
                 log_to_driver=False)
        out["ray_init_s"] = round(time.perf_counter() - t, 2)
    with PeakRss() as mem:
        base = mem.peak
        t = time.perf_counter()
        if engine == "ray":
            frame = build_features_ray(bars, macro=macro)
        else:
            frame = build_features_local(bars, macro=macro)
        secs = time.perf_counter() - t
    out.update({"seconds": round(secs, 2), "rows_out": len(frame),
                "rows_per_s": round(len(bars) / secs), "peak_rss_gb": round(mem.peak / 1e9, 2),
                "rss_increase_gb": round((mem.peak - base) / 1e9, 2)})
    if engine == "ray":
        import ray

        ray.shutdown()
    return out


def _run(universe: str, engine: str, n_tickers: int) -> dict:
    cmd = [sys.executable, "-m", "bench.features", "--worker", universe, engine,
           "--tickers", str(n_tickers)]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=Path(__file__).parents[1])
    lines = [x for x in res.stdout.splitlines() if x.startswith("{")]
    if res.returncode != 0 or not lines:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{res.stdout[-2000:]}\n{res.stderr[-4000:]}")
    return json.loads(lines[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("bench/results/features.json"))
    ap.add_argument("--quick", action="store_true", help="200 synthetic tickers, not 2,000")
    ap.add_argument("--tickers", type=int, default=None)
    ap.add_argument("--worker", nargs=2, metavar=("UNIVERSE", "ENGINE"))
    a = ap.parse_args()
    if a.worker:
        print(json.dumps(worker(*a.worker, a.tickers or 2000)), flush=True)
        return
    n = a.tickers or (200 if a.quick else 2000)
    runs = []
    for universe in ("skfolio", "synthetic"):
        for engine in ("local", "ray"):
            r = _run(universe, engine, n)
            runs.append(r)
            print(f"{universe:9s} {engine:5s} {r['rows_in']:>9,d} rows  {r['seconds']:7.2f} s  "
                  f"{r['rows_per_s']:>9,d} rows/s  peak {r['peak_rss_gb']:.2f} GB "
                  f"(+{r['rss_increase_gb']:.2f})"
                  + (f"  ray.init {r['ray_init_s']} s" if "ray_init_s" in r else ""), flush=True)
    ratios = {}
    for universe in ("skfolio", "synthetic"):
        loc = next(r for r in runs if r["universe"] == universe and r["engine"] == "local")
        ray_ = next(r for r in runs if r["universe"] == universe and r["engine"] == "ray")
        ratios[universe] = {
            "time_ray_over_local": round(ray_["seconds"] / loc["seconds"], 2),
            "time_incl_init_ray_over_local": round(
                (ray_["seconds"] + ray_["ray_init_s"]) / loc["seconds"], 2),
            "peak_rss_ray_over_local": round(ray_["peak_rss_gb"] / loc["peak_rss_gb"], 2)}
        print(f"{universe}: ray/local time {ratios[universe]['time_ray_over_local']}x "
              f"(with ray.init {ratios[universe]['time_incl_init_ray_over_local']}x), "
              f"peak memory {ratios[universe]['peak_rss_ray_over_local']}x")
    doc = {"bench": "features", "machine": {"cpus": os.cpu_count(),
                                            "python": platform.python_version()},
           "note": "skfolio is close-only: OHLC = close, volume = 0",
           "runs": runs, "ratios": ratios}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(doc, indent=2))
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
