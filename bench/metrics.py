"""Cost of the serving metrics on Predict, side by side in one run (JSON out).

The same service (LightGBM 300 trees x 30 features, horizons 1/5/20, explain on) behind the
bare gRPC server, once recording every series through ``ray.util.metrics`` (this process is a
Ray driver, so the records are real) and once with metrics off; blocks of calls alternate
between the two so load drift hits both alike.

    python -m bench.metrics --calls 2000 --out data/bench/metrics.json
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np

from bench import emit
from bench.serving_quick import BenchReader, latencies_ms, make_bundles


def run(calls: int, blocks: int) -> dict:
    import ray

    from features.telemetry import Recorder
    from serving.grpc_server import BackgroundServer
    from serving.lookup import FeatureLookup
    from serving.metrics import SERVING_SERIES, ServingMetrics
    from serving.models import ModelSource
    from serving.modelset import ServedModels
    from serving.service import LocalStages, PredictionService

    ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        work = Path(tempfile.mkdtemp(prefix="srs-mbench-"))
        served = ServedModels({"champion": ModelSource(bundle_dirs=make_bundles(work))})
        services = {}
        for name, enabled in (("metrics_on", True), ("metrics_off", False)):
            m = ServingMetrics(Recorder(SERVING_SERIES, enabled=enabled))
            stages = LocalStages(FeatureLookup(BenchReader(), metrics=m), served)
            services[name] = PredictionService(stages, metrics=m)
        lat: dict[str, list[np.ndarray]] = {k: [] for k in services}
        with BackgroundServer(services["metrics_on"]) as on, \
                BackgroundServer(services["metrics_off"]) as off:
            targets = {"metrics_on": on.target, "metrics_off": off.target}
            for b in range(blocks):
                order = list(targets) if b % 2 == 0 else list(targets)[::-1]
                for k in order:
                    lat[k].append(latencies_ms(targets[k], calls // blocks))
    finally:
        ray.shutdown()
    out: dict = {"calls_each": calls, "blocks": blocks, "load_avg_1m": os.getloadavg()[0],
                 "path": "bare grpcio server, in-process service, explain=True, 3 horizons"}
    for k, parts in lat.items():
        ms = np.concatenate(parts)
        out[k] = {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
                  "mean_ms": float(ms.mean())}
    out["p50_ratio_on_off"] = out["metrics_on"]["p50_ms"] / out["metrics_off"]["p50_ms"]
    out["p50_overhead_ms"] = out["metrics_on"]["p50_ms"] - out["metrics_off"]["p50_ms"]
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--calls", type=int, default=2000)
    p.add_argument("--blocks", type=int, default=10)
    p.add_argument("--out", type=Path, default=None)
    a = p.parse_args()
    emit(run(a.calls, a.blocks), a.out)


if __name__ == "__main__":
    main()
