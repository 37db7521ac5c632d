"""Serving latency, side by side: bare grpcio vs Ray Serve fused (public port = direct ingress,
and through Serve's proxy) vs split, ~1000 sequential ``Predict`` calls with ``explain=True``.

    .venv/bin/python bench/serving_quick.py --calls 1000 --out bench/results/serving_quick.json

Model: LightGBM, 300 trees x 30 features per horizon, horizons 1/5/20 (the STACK.md size).
Explanations are measured cold (explain cache off: TreeSHAP on every call) and warm (cache on,
50 tickers cycling, so after the first pass every call hits). Starts its own private Ray
(``address="local"``, own temp dir) with ``serving.launch.serve_env`` in the environment.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from features.ports import free_port

REPO = Path(__file__).resolve().parents[1]
N_FEATURES, N_TREES, HORIZONS, N_TICKERS = 30, 300, (1, 5, 20), 50
FEATURES = [f"f{i:02d}" for i in range(N_FEATURES)]


class BenchReader:
    """Synthetic online store: fixed random rows for ``n`` tickers T000.."""

    def __init__(self, n: int = N_TICKERS, seed: int = 3, delay_ms: float = 0.0) -> None:
        # delay_ms: a networked store's round trip (bench.stage_retry keeps reads in flight)
        self.delay_s = delay_ms / 1e3
        rng = np.random.default_rng(seed)
        self.rows = {
            f"T{i:03d}": {
                **{f: float(v) for f, v in zip(FEATURES, rng.standard_normal(N_FEATURES))},
                "feature_ts": 1_714_521_600.0,
            }
            for i in range(n)
        }

    def read(self, tickers: Sequence[str]) -> Mapping[str, dict[str, float] | None]:
        if self.delay_s:
            time.sleep(self.delay_s)
        return {t: self.rows.get(t) for t in tickers}


def make_bundles(root: Path) -> dict[int, str]:
    import lightgbm as lgb

    from training.export import export_bundle

    out = {}
    for h in HORIZONS:
        rng = np.random.default_rng(h)
        x = rng.standard_normal((5000, N_FEATURES))
        y = 0.01 * (x[:, 0] - 0.5 * x[:, 1] * x[:, 2]) + 0.01 * rng.standard_normal(5000)
        params = {"objective": "regression", "num_leaves": 15, "verbose": -1, "num_threads": 2}
        booster = lgb.train(params, lgb.Dataset(x, y, feature_name=FEATURES), N_TREES)
        out[h] = str(
            export_bundle(
                booster,
                FEATURES,
                root / f"h{h}",
                model_name=f"bench-h{h}",
                model_version="1",
                horizon=h,
            )
        )
    return out


def latencies_ms(target: str, calls: int, explain: bool = True) -> np.ndarray:
    """Milliseconds of ``calls`` sequential Predicts (tickers in rotation), after one warm-up
    call per ticker (connections, caches, lazy init)."""
    from serving.client import PredictionClient

    tickers = [f"T{i:03d}" for i in range(N_TICKERS)]
    with PredictionClient(target) as c:
        for t in tickers:
            c.predict(t, explain=explain)
        lat = np.empty(calls)
        for i in range(calls):
            t0 = time.perf_counter()
            c.predict(tickers[i % N_TICKERS], explain=explain)
            lat[i] = time.perf_counter() - t0
    return lat * 1e3


def measure(target: str, calls: int, explain: bool = True) -> dict[str, float]:
    ms = latencies_ms(target, calls, explain)
    return {
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
        "mean_ms": float(ms.mean()),
        "calls": calls,
    }


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--calls", type=int, default=1000)
    p.add_argument("--out", default=str(REPO / "bench/results/serving_quick.json"))
    p.add_argument("--serve-only", action="store_true", help="skip the bare grpcio runs")
    p.add_argument(
        "--throughput-optimized",
        action="store_true",
        help="also set RAY_SERVE_THROUGHPUT_OPTIMIZED=1 before Ray starts",
    )
    a = p.parse_args(argv)
    sys.path.insert(0, str(REPO))
    from serving.app import AppArgs
    from serving.config import StageConfig
    from serving.grpc_server import BackgroundServer
    from serving.launch import serve_env, start_serve
    from serving.models import ModelSource
    from serving.service import PredictionService

    work = Path(tempfile.mkdtemp(prefix="srs-bench-"))
    results: dict[str, dict] = {}
    try:
        bundles = make_bundles(work / "bundles")
        base = {
            "models": ModelSource(bundle_dirs=bundles),
            "reader": "bench.serving_quick:BenchReader",
        }
        for cache in () if a.serve_only else (0, 1024):
            svc = PredictionService(
                StageConfig(**base, explain_cache_size=cache).build_local_stages()
            )
            with BackgroundServer(svc) as s:
                results[f"bare_grpcio_explain_cache{'_on' if cache else '_off'}"] = measure(
                    s.target, a.calls
                )
                if cache:
                    results["bare_grpcio_no_explain"] = measure(s.target, a.calls, explain=False)
            print(json.dumps(results, indent=1), flush=True)

        gp, pgp, hp = free_port(), free_port(), free_port()
        os.environ.update(serve_env(gp))
        if a.throughput_optimized:
            os.environ["RAY_SERVE_THROUGHPUT_OPTIMIZED"] = "1"
        import ray
        from ray import serve

        temp_dir = tempfile.mkdtemp(prefix="/tmp/srs-bench-ray-")
        ray.init(
            address="local",
            num_cpus=2,
            include_dashboard=False,
            _temp_dir=temp_dir,
            runtime_env={"env_vars": {"PYTHONPATH": str(REPO)}},
            log_to_driver=False,
        )
        try:
            for mode, cache in (("fused", 0), ("fused", 1024), ("split", 0), ("split", 1024)):
                args = AppArgs(**base, mode=mode, explain_cache_size=cache)
                ep = start_serve(args, gp, hp, "127.0.0.1", proxy_grpc_port=pgp)
                tag = f"serve_{mode}_explain_cache{'_on' if cache else '_off'}"
                results[f"{tag}_public_direct"] = measure(ep.grpc_target, a.calls)
                results[f"{tag}_via_proxy"] = measure(ep.proxy_grpc_target, a.calls)
                if mode == "fused" and cache:
                    results["serve_fused_no_explain_public_direct"] = measure(
                        ep.grpc_target, a.calls, explain=False
                    )
                serve.delete(args.app_name)
                print(json.dumps(results, indent=1), flush=True)
        finally:
            serve.shutdown()
            ray.shutdown()
            shutil.rmtree(temp_dir, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    bare = results.get("bare_grpcio_explain_cache_off", {}).get("p50_ms", float("nan"))
    report = {
        "throughput_optimized": a.throughput_optimized,
        "load_average_at_end": os.getloadavg(),
        "model": f"lightgbm {N_TREES} trees x {N_FEATURES} features, horizons {list(HORIZONS)}",
        "results": results,
        "p50_ratio_to_bare_cache_off": {k: v["p50_ms"] / bare for k, v in results.items()},
    }
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(report, indent=2))
    for k, v in results.items():
        print(f"{k:<50} p50 {v['p50_ms']:7.3f} ms  p99 {v['p99_ms']:7.3f} ms")
    return report


if __name__ == "__main__":
    main()
