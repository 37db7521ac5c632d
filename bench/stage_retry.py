"""Stage-call retry bench on a real split-mode Serve app (serving/deployments/retry.py).

1. ``overhead``: sequential Predict (no explanation) through the public gRPC port, in
   alternating blocks with the retry wrapper on (2 attempts) and off (a plain handle call),
   switched live on the ingress replica, so both modes see the same machine load. Reported:
   p50/p99 of each and the ratio p50(on) / p50(off).
2. ``kills``: ``--clients`` client threads; once all answer, a third of ``--kill-window-s``
   later one replica of a stage (Predictor, then FeatureLookup) is SIGKILLed by PID, and the
   load goes on until the window ends and Serve has the replica back. Each kill runs with the
   retry on and, for comparison, off. Reported: failed requests out of all (by status code),
   the resends the ingress counted, and when Serve had the replica back. Lookups take
   ``--lookup-delay-ms`` (a networked store's round trip), so some are in flight at the kill;
   scoring takes ~1 ms, so a Predictor kill often catches none.

    .venv/bin/python -m bench.stage_retry --out data/bench/stage_retry.json
"""

from __future__ import annotations

import argparse
import os
import signal
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Self

import numpy as np

from bench import write_json
from bench.serving_quick import N_TICKERS, free_port, latencies_ms, make_bundles
from bench.soak import _ray_processes


def _stage_pids(stage: str) -> list[int]:
    """PIDs of live replica processes of ``stage`` (process title ``ray::ServeReplica:...``)."""
    return sorted(pid for pid, name in _ray_processes().items() if f":{stage}" in name)


def overhead(target: str, ingress, calls: int, rounds: int) -> dict:
    on: list[np.ndarray] = []
    off: list[np.ndarray] = []
    for _ in range(rounds):  # alternate, so a load spike hits both modes alike
        for attempts, acc in ((2, on), (1, off)):
            ingress.set_stage_call_attempts.remote(attempts).result(timeout_s=30)
            acc.append(latencies_ms(target, calls, explain=False))
    ingress.set_stage_call_attempts.remote(2).result(timeout_s=30)
    a, b = np.concatenate(on), np.concatenate(off)
    res = {"calls_per_mode": int(a.size), "rounds": rounds,
           "retry_on": {"p50_ms": float(np.median(a)), "p99_ms": float(np.percentile(a, 99))},
           "retry_off": {"p50_ms": float(np.median(b)), "p99_ms": float(np.percentile(b, 99))}}
    res["p50_ratio_on_over_off"] = res["retry_on"]["p50_ms"] / res["retry_off"]["p50_ms"]
    return res


class _Load:
    """``clients`` threads, each its own channel, calling Predict (tickers in rotation) until
    stopped; every outcome is counted, the first call included."""

    def __init__(self, target: str, clients: int) -> None:
        self.target, self.ok, self.errors = target, 0, Counter()
        self.lat: list[float] = []
        self._stop, self._lock = threading.Event(), threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True)
                         for i in range(clients)]

    def _run(self, i: int) -> None:
        from serving.client import PredictionClient, PredictionError

        with PredictionClient(self.target) as c:
            k = i
            while not self._stop.is_set():
                k += 1
                t0 = time.perf_counter()
                try:
                    c.predict(f"T{k % N_TICKERS:03d}", timeout=30)
                    with self._lock:
                        self.ok += 1
                        self.lat.append(time.perf_counter() - t0)
                except PredictionError as e:
                    with self._lock:
                        self.errors[e.code.name] += 1

    def __enter__(self) -> Self:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(60)


def kill_run(target: str, ingress, stage: str, replicas: int, clients: int, seconds: float,
             attempts: int) -> dict:
    ingress.set_stage_call_attempts.remote(attempts).result(timeout_s=30)
    before = ingress.stage_retries.remote().result(timeout_s=30)
    with _Load(target, clients) as load:
        while load.ok < 4 * clients:  # every client connected and answered: load is on
            time.sleep(0.1)
        time.sleep(seconds / 3)
        ok_before = load.ok
        pids = _stage_pids(stage)
        victim = pids[0]
        os.kill(victim, signal.SIGKILL)
        t0 = time.monotonic()
        back = None
        while time.monotonic() - t0 < 2 * seconds / 3 or back is None:
            if back is None and len([p for p in _stage_pids(stage) if p != victim]) >= replicas:
                back = time.monotonic() - t0
            if time.monotonic() - t0 > 120:
                break
            time.sleep(0.5)
    after = ingress.stage_retries.remote().result(timeout_s=30)
    lat = np.asarray(load.lat) * 1e3
    failed = sum(load.errors.values())
    return {"stage": stage, "retry": "on" if attempts == 2 else "off", "clients": clients,
            "ok": load.ok, "failed": failed, "total": load.ok + failed,
            "errors_by_code": dict(load.errors), "ok_before_kill": ok_before,
            "killed_pid": victim, "replicas_before": len(pids), "replica_back_after_s": back,
            "resends": {k: v - before.get(k, 0) for k, v in after.items()
                        if v != before.get(k, 0)},
            "p50_ms": float(np.median(lat)) if lat.size else None,
            "load_avg_1m": os.getloadavg()[0]}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--calls", type=int, default=300, help="Predicts per overhead block")
    p.add_argument("--rounds", type=int, default=4, help="overhead blocks per mode")
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--kill-window-s", type=float, default=20.0)
    p.add_argument("--replicas", type=int, default=2, help="FeatureLookup and Predictor each")
    p.add_argument("--lookup-delay-ms", type=float, default=5.0,
                   help="online-store round trip of the synthetic reader: keeps lookups in "
                   "flight when a FeatureLookup replica is killed (0 = in-memory)")
    p.add_argument("--out", default="data/bench/stage_retry.json")
    a = p.parse_args(argv)

    from ray import serve

    from bench.serving import _PrivateRay
    from serving.app import AppArgs
    from serving.launch import serve_env, start_serve
    from serving.models import ModelSource

    tmp = Path(tempfile.mkdtemp(prefix="sr-retry-"))
    bundles = make_bundles(tmp / "bundles")
    gp, pgp, hp = free_port(), free_port(), free_port()
    out: dict = {"bench": "stage_retry", "config": vars(a), "cpus": os.cpu_count(),
                 "tickers": N_TICKERS}
    with _PrivateRay(serve_env(gp)):
        args = AppArgs(models=ModelSource(bundle_dirs=bundles),
                       reader="bench.serving_quick:BenchReader",
                       reader_kwargs={"delay_ms": a.lookup_delay_ms}, mode="split",
                       lookup_replicas=a.replicas, predictor_replicas=a.replicas,
                       lookup_num_cpus=0.1, predictor_num_cpus=0.2, explainer_num_cpus=0.2,
                       feature_cache_ttl_s=0,  # every request reaches a lookup replica
                       max_queued_requests=-1)
        ep = start_serve(args, gp, hp, "127.0.0.1", proxy_grpc_port=pgp, timeout_s=300)
        ingress = serve.get_app_handle(args.app_name)
        out["load_avg_1m_start"] = os.getloadavg()[0]
        out["overhead"] = overhead(ep.grpc_target, ingress, a.calls, a.rounds)
        write_json(a.out, out)
        out["kills"] = []
        for stage in ("Predictor", "FeatureLookup"):
            for attempts in (2, 1):
                out["kills"].append(kill_run(ep.grpc_target, ingress, stage, a.replicas,
                                             a.clients, a.kill_window_s, attempts))
                write_json(a.out, out)
        serve.delete(args.app_name)
    out["load_avg_1m_end"] = os.getloadavg()[0]
    write_json(a.out, out)
    o = out["overhead"]
    print(f"Predict p50 retry on {o['retry_on']['p50_ms']:.2f} ms, off "
          f"{o['retry_off']['p50_ms']:.2f} ms: ratio {o['p50_ratio_on_over_off']:.3f}")
    for k in out["kills"]:
        print(f"kill {k['stage']} (retry {k['retry']}): failed {k['failed']}/{k['total']} "
              f"{k['errors_by_code']}, resends {k['resends']}")
    return out


if __name__ == "__main__":
    main()
