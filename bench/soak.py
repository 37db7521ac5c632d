"""Soak and replica-kill bench on a real Ray Serve app (split mode, token auth as shipped).

1. ``soak``: ``--minutes`` (default 10) of Predict at ``--clients`` (default 32) concurrent
   clients (4 processes x threads, each its own channel, tickers in rotation). Every
   ``--sample-s`` the RSS of each Serve replica, the proxy/controller and the whole Ray tree is
   sampled. Reported: p50/p99 latency, req/s, errors, and memory growth from the first sample
   after warm-up to the last, in MB and as a linear slope (MB per minute over the second half,
   so start-up allocation does not count as growth).
2. ``replica_kill``: the same load for ``--kill-window-s``; after a third of it one Predictor
   replica (of ``--predictor-replicas``, default 2) is SIGKILLed by PID. Reported: failed
   requests (by status code) out of all, and how long until Serve had the replica back.

    .venv/bin/python -m bench.soak --minutes 10 --out data/bench/soak.json
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import signal
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from bench import write_json
from bench.serving_quick import N_TICKERS, free_port, make_bundles

TICKERS = [f"T{i:03d}" for i in range(N_TICKERS)]


def _client_proc(target: str, threads: int, seconds: float, q) -> None:
    from serving.client import PredictionClient, PredictionError

    lat: list[list[float]] = [[] for _ in range(threads)]
    errs: list[dict[str, int]] = [{} for _ in range(threads)]
    start = threading.Barrier(threads + 1)

    def work(i: int) -> None:
        with PredictionClient(target) as c:
            c.predict(TICKERS[i % N_TICKERS])
            start.wait()
            stop, k = time.monotonic() + seconds, i
            while time.monotonic() < stop:
                k += 1
                t0 = time.perf_counter()
                try:
                    c.predict(TICKERS[k % N_TICKERS], timeout=30)
                    lat[i].append(time.perf_counter() - t0)
                except PredictionError as e:
                    errs[i][e.code.name] = errs[i].get(e.code.name, 0) + 1

    ts = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for t in ts:
        t.start()
    start.wait()
    for t in ts:
        t.join()
    merged: dict[str, int] = {}
    for e in errs:
        for k, v in e.items():
            merged[k] = merged.get(k, 0) + v
    q.put((np.concatenate([np.asarray(x) for x in lat]) if any(lat) else np.empty(0), merged))


def load(target: str, clients: int, seconds: float, during=None) -> dict:
    """Run the client processes; ``during()`` runs in this process while they work."""
    procs = min(4, clients)
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    ps = [ctx.Process(target=_client_proc, args=(target, clients // procs, seconds, q))
          for _ in range(procs)]
    for p in ps:
        p.start()
    extra = during() if during else None
    got = [q.get(timeout=seconds + 300) for _ in ps]
    for p in ps:
        p.join(30)
    lat = np.concatenate([g[0] for g in got]) * 1e3
    errors: dict[str, int] = {}
    for g in got:
        for k, v in g[1].items():
            errors[k] = errors.get(k, 0) + v
    n_err = sum(errors.values())
    return {"ok": int(lat.size), "failed": n_err, "errors_by_code": errors,
            "req_per_s": lat.size / seconds,
            "p50_ms": float(np.percentile(lat, 50)) if lat.size else None,
            "p99_ms": float(np.percentile(lat, 99)) if lat.size else None,
            "clients": clients, "seconds": seconds, "during": extra,
            "load_avg_1m": os.getloadavg()[0]}


def _ray_processes() -> dict[int, str]:
    """pid -> name of this process's Ray tree (raylet parents every worker)."""
    import psutil

    me = psutil.Process()
    out = {}
    for c in me.children(recursive=True):
        try:
            out[c.pid] = " ".join(c.cmdline()[:2]) or c.name()  # "ray::ServeReplica:app:Role"
        except psutil.Error:
            continue
    return out


def sample_memory() -> dict[str, float]:
    """RSS MB of every Serve actor (by role) and of the whole Ray tree."""
    import psutil

    roles: dict[str, float] = {}
    total = 0.0
    for pid, name in _ray_processes().items():
        try:
            rss = psutil.Process(pid).memory_info().rss / 2**20
        except psutil.Error:
            continue
        total += rss
        for role in ("Ingress", "FeatureLookup", "Predictor", "Explainer", "ProxyActor",
                     "ServeController"):
            if role in name:
                roles[role] = roles.get(role, 0.0) + rss
    return {"total_mb": total, **{f"{k}_mb": v for k, v in roles.items()}}


def soak(target: str, clients: int, minutes: float, sample_s: float) -> dict:
    samples: list[tuple[float, dict]] = []
    stop = threading.Event()

    def sampler() -> None:
        t0 = time.monotonic()
        while not stop.is_set():
            samples.append((time.monotonic() - t0, sample_memory()))
            stop.wait(sample_s)

    th = threading.Thread(target=sampler, daemon=True)
    th.start()
    res = load(target, clients, minutes * 60)
    stop.set()
    th.join()
    t = np.array([s[0] for s in samples])
    mem = {k: np.array([s[1].get(k, np.nan) for s in samples]) for k in samples[-1][1]}
    warm = min(len(t) - 1, max(1, len(t) // 10))  # skip start-up allocation
    half = len(t) // 2
    growth = {}
    for k, v in mem.items():
        slope = (float(np.polyfit(t[half:] / 60, v[half:], 1)[0])
                 if len(t) - half >= 3 and np.isfinite(v[half:]).all() else None)
        growth[k] = {"start_mb": float(v[warm]), "end_mb": float(v[-1]),
                     "growth_mb": float(v[-1] - v[warm]),
                     "growth_pct": float(100 * (v[-1] - v[warm]) / v[warm]) if v[warm] else None,
                     "slope_mb_per_min_2nd_half": slope}
    res["memory"] = growth
    res["memory_samples"] = len(samples)
    return res


def _predictor_pids() -> list[int]:
    """PIDs of live Predictor replica processes in this Ray tree (by their process title)."""
    return sorted(pid for pid, name in _ray_processes().items() if "Predictor" in name)


def replica_kill(target: str, clients: int, seconds: float, replicas: int) -> dict:
    def killer() -> dict:
        time.sleep(seconds / 3)
        before = _predictor_pids()
        victim = before[0]
        os.kill(victim, signal.SIGKILL)
        t0 = time.monotonic()
        back = None
        while time.monotonic() - t0 < seconds:
            alive = [p for p in _predictor_pids() if p != victim]
            if len(alive) >= replicas:
                back = time.monotonic() - t0
                break
            time.sleep(0.5)
        return {"killed_pid": victim, "replicas_before": len(before),
                "replica_back_after_s": back}

    return load(target, clients, seconds, during=killer)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=10.0, help="soak duration")
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--sample-s", type=float, default=5.0, help="memory sampling interval")
    p.add_argument("--kill-window-s", type=float, default=45.0)
    p.add_argument("--predictor-replicas", type=int, default=2)
    p.add_argument("--skip-soak", action="store_true")
    p.add_argument("--out", default="data/bench/soak.json")
    a = p.parse_args(argv)

    from ray import serve

    from bench.serving import _PrivateRay
    from serving.app import AppArgs
    from serving.launch import serve_env, start_serve
    from serving.models import ModelSource

    tmp = Path(tempfile.mkdtemp(prefix="sr-soak-"))
    bundles = make_bundles(tmp / "bundles")
    gp, pgp, hp = free_port(), free_port(), free_port()
    out: dict = {"config": vars(a)}
    with _PrivateRay(serve_env(gp)):
        args = AppArgs(models=ModelSource(bundle_dirs=bundles),
                       reader="bench.serving_quick:BenchReader", mode="split",
                       predictor_replicas=a.predictor_replicas, max_queued_requests=-1)
        ep = start_serve(args, gp, hp, "127.0.0.1", proxy_grpc_port=pgp, timeout_s=300)
        if not a.skip_soak:
            out["soak"] = soak(ep.grpc_target, a.clients, a.minutes, a.sample_s)
            write_json(a.out, out)  # a failure in the kill phase keeps the soak figures
        out["replica_kill"] = replica_kill(ep.grpc_target, a.clients, a.kill_window_s,
                                           a.predictor_replicas)
        serve.delete(args.app_name)
    write_json(a.out, out)
    print(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
