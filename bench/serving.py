"""Serving latency and throughput, side by side, one request mix, four paths:

1. ``inproc``  — ``PredictionService`` over in-process stage objects (no transport);
2. ``grpcio``  — the bare grpcio server (``python -m serving.grpc_server``, own process);
3. ``fused``   — Ray Serve, one replica holds every stage, public port = direct ingress;
4. ``split``   — Ray Serve, FeatureLookup / Predictor / Explainer deployments behind handles.

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

from bench.serving_quick import FEATURES, HORIZONS, N_FEATURES, N_TICKERS, N_TREES, free_port
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
    from serving.client import PredictionClient

    with PredictionClient(target) as c:
        for t in TICKERS:
            c.predict(t, explain=explain)
        lat = np.empty(calls)
        for i in range(calls):
            t0 = time.perf_counter()
            c.predict(TICKERS[i % N_TICKERS], explain=explain)
            lat[i] = time.perf_counter() - t0
    return _stats(lat)


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
    a = p.parse_args(argv)
    from serving.app import AppArgs
    from serving.config import StageConfig
    from serving.launch import serve_env, start_serve
    from serving.models import ModelSource

    work = Path(tempfile.mkdtemp(prefix="srs-bench-"))
    results: dict[str, dict] = {}
    try:
        bundles = make_bench_bundles(work / "bundles")
        base = {"models": ModelSource(bundle_dirs=bundles), "reader": READER,
                "warm_tickers": TICKERS}
        cfg = StageConfig(**base)
        results["batching_gain_pred_contrib"] = batching_gain(bundles)
        for explain in (True, False):
            results[f"inproc_{'explain' if explain else 'no_explain'}_1client"] = inproc(
                cfg, a.calls, explain)
        results["inproc_explain_cold_1client"] = inproc(
            StageConfig(**{**base, "warm_tickers": []}, explain_cache_size=0), a.calls, True)

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

        gp, pgp, hp = free_port(), free_port(), free_port()
        os.environ.update(serve_env(gp))
        import ray
        from ray import serve

        temp_dir = tempfile.mkdtemp(prefix="/tmp/srs-bench-ray-")
        ray.init(address="local", num_cpus=2, include_dashboard=False, _temp_dir=temp_dir,
                 runtime_env={"env_vars": {"PYTHONPATH": str(REPO)}}, log_to_driver=False)
        try:
            for mode in ("fused",) if a.skip_split else ("fused", "split"):
                args = AppArgs(**base, mode=mode, max_queued_requests=-1)
                ep = start_serve(args, gp, hp, "127.0.0.1", proxy_grpc_port=pgp)
                run_target(f"serve_{mode}", ep.grpc_target, a, results)
                if mode == "fused":
                    cold = AppArgs(**{**base, "warm_tickers": []}, explain_cache_size=0,
                                   mode=mode, app_name="cold")
                    serve.delete(args.app_name)
                    ep = start_serve(cold, gp, hp, "127.0.0.1", proxy_grpc_port=pgp)
                    results["serve_fused_explain_cold_1client"] = latency_grpc(
                        ep.grpc_target, a.calls, True)
                    serve.delete("cold")
                else:
                    serve.delete(args.app_name)
        finally:
            serve.shutdown()
            ray.shutdown()
            shutil.rmtree(temp_dir, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    ratios = {}
    for k, v in results.items():
        if k.startswith("serve_") and k.endswith("1client"):
            ref = results.get(k.replace("serve_fused", "grpcio").replace("serve_split", "grpcio"))
            if ref:
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
