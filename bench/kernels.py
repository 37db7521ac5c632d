"""Kernel benchmark: ours vs TA-Lib vs pandas on the same arrays, plus engine tick latency.

Run: ``python -m bench.kernels --out data/bench/kernels.json`` (~1 minute on 2 cores).
Prints a table of per-call times and ratios (ours / TA-Lib, ours / pandas) and writes the same
figures as JSON. Times are the best of ``--repeat`` timing rounds, each averaging enough calls
to last ~20 ms, interleaved between contenders so background load hits all of them alike.
Tests never assert these numbers.

Which indicators count as "shared" (the issue's target: ours at or below TA-Lib's time): every
``kernels.CATALOGUE`` entry with a ``talib`` twin, read from the catalogue rather than listed
by hand, so none can be left out: SMA, EMA, WMA, RSI, MACD, STOCH, ROC, MOM, STDDEV, BBANDS,
TRANGE, ATR, OBV (13), and since the rolling primitives became public MAX, MIN, CORREL (16). An earlier version counted only the first ten cases of the table and
called MOM and STDDEV "extra", which left out two of the slowest; the count is now over all
thirteen and the JSON lists them (``shared``). Each case calls ours and TA-Lib on the same
arrays for the same outputs: BBANDS calls ``bollinger(..., bands_only=True)``, which returns
TA-Lib's three bands (the default call adds %b and bandwidth, two more arrays and divisions
TA-Lib's BBANDS does not compute). Nothing is cached between calls: every call allocates and
fills its outputs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import timeit
from pathlib import Path

import numpy as np
import pandas as pd

import kernels as K
from kernels.engine import DEFAULT_FEATURES, Engine


def _bars(n: int) -> dict[str, np.ndarray]:
    """AAPL daily bars (n=0: the real 3270 days), or a seeded random walk of length n."""
    if n == 0:
        from bokeh_sampledata.stocks import AAPL

        return {
            k: np.asarray(AAPL[k], dtype=np.float64)
            for k in ("open", "high", "low", "close", "volume")
        }
    rng = np.random.default_rng(0)
    c = 100.0 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    o = c * np.exp(rng.normal(0, 0.005, n))
    h = np.maximum(o, c) * np.exp(np.abs(rng.normal(0, 0.005, n)))
    lo = np.minimum(o, c) * np.exp(-np.abs(rng.normal(0, 0.005, n)))
    v = rng.integers(1_000, 1_000_000, n).astype(np.float64)
    return {"open": o, "high": h, "low": lo, "close": c, "volume": v}


def _cases(b: dict[str, np.ndarray]):
    """name -> (ours, talib, pandas) zero-argument callables on the same arrays."""
    import talib

    c, h, lo, v = b["close"], b["high"], b["low"], b["volume"]
    s, hs, ls, vs = pd.Series(c), pd.Series(h), pd.Series(lo), pd.Series(v)

    def pd_rsi():
        d = s.diff()
        g = d.clip(lower=0).ewm(alpha=1 / 14, adjust=False).mean()
        lo_ = (-d).clip(lower=0).ewm(alpha=1 / 14, adjust=False).mean()
        return 100 * g / (g + lo_)

    def pd_macd():
        line = s.ewm(span=12, adjust=False).mean() - s.ewm(span=26, adjust=False).mean()
        sig = line.ewm(span=9, adjust=False).mean()
        return line, sig, line - sig

    def pd_boll():
        m, sd = s.rolling(20).mean(), s.rolling(20).std(ddof=0)
        return m + 2 * sd, m, m - 2 * sd

    def pd_atr():
        pc = s.shift()
        tr = pd.concat([hs - ls, (hs - pc).abs(), (ls - pc).abs()], axis=1).max(axis=1)
        return tr.ewm(alpha=1 / 14, adjust=False).mean()

    def pd_trange():
        pc = s.shift()
        return pd.concat([hs - ls, (hs - pc).abs(), (ls - pc).abs()], axis=1).max(axis=1)

    def pd_stoch():
        hh, ll = hs.rolling(5).max(), ls.rolling(5).min()
        k = (100 * (s - ll) / (hh - ll)).rolling(3).mean()
        return k, k.rolling(3).mean()

    w = np.arange(1, 31, dtype=np.float64)
    return {
        "SMA(30)": (lambda: K.sma(c, 30), lambda: talib.SMA(c, 30), lambda: s.rolling(30).mean()),
        "EMA(30)": (lambda: K.ema(c, 30), lambda: talib.EMA(c, 30), lambda: s.ewm(span=30, adjust=False).mean()),
        "WMA(30)": (
            lambda: K.wma(c, 30),
            lambda: talib.WMA(c, 30),
            lambda: s.rolling(30).apply(lambda x: x @ w / w.sum(), raw=True) if len(c) <= 10_000 else None,
        ),
        "RSI(14)": (lambda: K.rsi(c, 14), lambda: talib.RSI(c, 14), pd_rsi),
        "MACD(12,26,9)": (lambda: K.macd(c), lambda: talib.MACD(c), pd_macd),
        "BBANDS(20,2)": (lambda: K.bollinger(c, 20, 2.0, bands_only=True), lambda: talib.BBANDS(c, 20, 2.0, 2.0), pd_boll),
        "ATR(14)": (lambda: K.atr(h, lo, c, 14), lambda: talib.ATR(h, lo, c, 14), pd_atr),
        "STOCH(5,3,3)": (lambda: K.stoch(h, lo, c), lambda: talib.STOCH(h, lo, c), pd_stoch),
        "OBV": (lambda: K.obv(c, v), lambda: talib.OBV(c, v), lambda: (np.sign(s.diff()).fillna(0) * vs).cumsum()),
        "ROC(10)": (lambda: K.roc(c, 10), lambda: talib.ROC(c, 10), lambda: s.pct_change(10) * 100),
        "MOM(10)": (lambda: K.momentum(c, 10), lambda: talib.MOM(c, 10), lambda: s.diff(10)),
        "STDDEV(20)": (lambda: K.rolling_std(c, 20, ddof=0), lambda: talib.STDDEV(c, 20, 1), lambda: s.rolling(20).std(ddof=0)),
        "TRANGE": (lambda: K.true_range(h, lo, c), lambda: talib.TRANGE(h, lo, c), pd_trange),
        "MAX(30)": (lambda: K.rolling_max(c, 30), lambda: talib.MAX(c, 30), lambda: s.rolling(30).max()),
        "MIN(30)": (lambda: K.rolling_min(c, 30), lambda: talib.MIN(c, 30), lambda: s.rolling(30).min()),
        "CORREL(30)": (lambda: K.rolling_corr(c, v, 30), lambda: talib.CORREL(c, v, 30), lambda: s.rolling(30).corr(vs)),
    }  # fmt: skip


def _talib_name(case: str) -> str:
    return case.split("(")[0]


def shared_cases(cases) -> list[str]:
    """The cases whose TA-Lib function is some catalogue entry's ``talib`` twin.

    Raises:
        AssertionError: if a catalogue indicator with a TA-Lib twin has no case here.
    """
    twins = {e["talib"] for e in K.CATALOGUE if e["talib"]}
    missing = twins - {_talib_name(k) for k in cases}
    assert not missing, f"catalogue indicators with a TA-Lib twin but no bench case: {missing}"
    return [k for k in cases if _talib_name(k) in twins]


def _number(fn) -> int:
    """Calls per timing round so that a round lasts ~20 ms."""
    number, elapsed = timeit.Timer(fn).autorange()
    return max(1, int(number * 0.02 / max(elapsed, 1e-9)))


def _time_interleaved(fns: dict, repeat: int) -> dict:
    """Best-of-``repeat`` seconds per call for each callable, rounds interleaved A,B,C,A,B,C.

    Interleaving matters on a shared 2-core machine: load that comes and goes then hits every
    contender alike instead of skewing one of them. A callable returning None is skipped.
    """
    live = {k: f for k, f in fns.items() if f() is not None}
    timers = {k: (timeit.Timer(f), _number(f)) for k, f in live.items()}
    best = dict.fromkeys(live, float("inf"))
    for _ in range(repeat):
        for k, (t, number) in timers.items():
            best[k] = min(best[k], t.timeit(number) / number)
    return {k: best.get(k) for k in fns}


def bench_batch(n: int, repeat: int) -> dict:
    b = _bars(n)
    rows = {}
    for name, (ours, ta, pdf) in _cases(b).items():
        t = _time_interleaved({"ours": ours, "talib": ta, "pandas": pdf}, repeat)
        t_ours, t_ta, t_pd = t["ours"], t["talib"], t["pandas"]
        rows[name] = {
            "ours_us": t_ours * 1e6,
            "talib_us": t_ta * 1e6,
            "pandas_us": None if t_pd is None else t_pd * 1e6,
            "ours_over_talib": t_ours / t_ta,
            "ours_over_pandas": None if t_pd is None else t_ours / t_pd,
        }
    shared = shared_cases(rows)
    wins = sum(rows[k]["ours_over_talib"] <= 1.0 for k in shared)
    return {
        "n": len(b["close"]),
        "indicators": rows,
        "shared": shared,
        "shared_at_or_below_talib": f"{wins}/{len(shared)}",
    }


def bench_engine(n_tickers: int, ticks: int) -> dict:
    rng = np.random.default_rng(1)
    c = 100.0 * np.exp(np.cumsum(rng.normal(0, 0.001, (ticks + 100, n_tickers)), axis=0))
    h, lo, v = c * 1.001, c * 0.999, np.full(n_tickers, 100.0)
    eng = Engine(DEFAULT_FEATURES, n_tickers)
    for t in range(100):  # warm every feature (ring buffers full, steady state)
        eng.update(c[t], h[t], lo[t], c[t], v)
    lat = np.empty(ticks)
    for i in range(ticks):
        t = i + 100
        t0 = time.perf_counter()
        eng.update(c[t], h[t], lo[t], c[t], v)
        lat[i] = time.perf_counter() - t0
    return {
        "n_tickers": n_tickers,
        "n_columns": len(eng.columns),
        "ticks": ticks,
        "p50_ms": float(np.percentile(lat, 50) * 1e3),
        "p99_ms": float(np.percentile(lat, 99) * 1e3),
        "mean_ms": float(lat.mean() * 1e3),
        "target_ms": 1.0,
    }


def bench_startup() -> dict:
    """Fresh-process cost of ``import kernels`` and of ``kernels.warmup()`` (cache warm)."""
    code = (
        "import time; t=time.perf_counter(); import kernels; a=time.perf_counter()-t; "
        "t=time.perf_counter(); kernels.warmup(); b=time.perf_counter()-t; print(a, b)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    imp, warm = (float(x) for x in out.stdout.split())
    return {"import_s": imp, "warmup_s_with_disk_cache": warm}


def main(argv: list[str] | None = None) -> dict:
    """Run every benchmark, print the tables, write JSON to ``--out``."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="JSON file to write")
    ap.add_argument("--repeat", type=int, default=7, help="timing rounds per case (best kept)")
    ap.add_argument("--ticks", type=int, default=2000, help="engine ticks to time")
    ap.add_argument("--tickers", type=int, default=500)
    args = ap.parse_args(argv)

    K.warmup()  # compile / load every kernel before timing
    result = {
        "machine": {
            "python": platform.python_version(),
            "cpu_count": os.cpu_count(),
            # shared 2-core machine: report the load the figures were taken under
            "loadavg_1m_at_start": os.getloadavg()[0],
        },
        "versions": {
            "numpy": np.__version__,
            "pandas": pd.__version__,
            "numba": __import__("numba").__version__,
            "talib": __import__("talib").__version__,
        },
        "startup": bench_startup(),
        "batch": [bench_batch(0, args.repeat), bench_batch(100_000, args.repeat)],
        "engine": bench_engine(args.tickers, args.ticks),
    }
    for b in result["batch"]:
        print(f"\nbatch, n={b['n']}  (us per call; ratio < 1 means ours is faster)")
        print(
            f"{'indicator':<15}{'ours':>10}{'talib':>10}{'pandas':>11}{'ours/ta':>9}{'ours/pd':>9}"
        )
        for name, r in b["indicators"].items():
            pdu = "-" if r["pandas_us"] is None else f"{r['pandas_us']:.1f}"
            pdr = "-" if r["ours_over_pandas"] is None else f"{r['ours_over_pandas']:.3f}"
            print(
                f"{name:<15}{r['ours_us']:>10.1f}{r['talib_us']:>10.1f}{pdu:>11}"
                f"{r['ours_over_talib']:>9.3f}{pdr:>9}"
            )
        print(f"shared indicators at or below TA-Lib's time: {b['shared_at_or_below_talib']}")
    result["machine"]["loadavg_1m_at_end"] = os.getloadavg()[0]
    e = result["engine"]
    print(
        f"\nengine: {e['n_tickers']} tickers x {e['n_columns']} columns, {e['ticks']} ticks: "
        f"p50 {e['p50_ms']:.3f} ms, p99 {e['p99_ms']:.3f} ms (target {e['target_ms']} ms)"
    )
    s = result["startup"]
    print(f"startup: import {s['import_s']:.2f} s, warmup {s['warmup_s_with_disk_cache']:.2f} s")
    m = result["machine"]
    print(
        f"load average: {m['loadavg_1m_at_start']:.1f} at start, {m['loadavg_1m_at_end']:.1f} at end"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
