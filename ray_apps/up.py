"""The main job: the whole stack on the embedded default, then serve until Ctrl-C.

``stockray up`` (or ``make run``): start a local Ray cluster -> ingest -> validate ->
features (Ray Data) -> Feast apply + materialize -> train per horizon (Ray Tune) -> MLflow
registry + ONNX -> Ray Serve gRPC/HTTP graph -> a sample prediction through the real client.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from features.settings import Settings
from features.sources import DEFAULT_TICKERS
from ray_apps import build_features, ingest, serve, train
from ray_apps.cluster import dashboard_url, local_cluster, wait_for_interrupt
from serving.launch import ServeEndpoints


@dataclass
class UpConfig:
    """What ``stockray up`` runs."""

    once: bool = False  # exit after the sample prediction instead of serving until Ctrl-C
    tickers: tuple[str, ...] = DEFAULT_TICKERS
    start: str | None = None  # first date of the embedded data (None = all, from 2000-03)
    end: str | None = None
    # feature pipeline: "auto" picks Ray Data or one process by row count (measured break-even
    # ~1.5M bars on 2 cores, see features.pipeline.choose_engine); "ray" forces Ray Data
    engine: str = "auto"
    auth: bool = True  # Ray token auth (see ray_apps.cluster)
    sample_ticker: str = "AAPL"
    train: train.TrainConfig = field(default_factory=train.TrainConfig)


@dataclass
class UpResult:
    timings: dict[str, float]
    ingest: dict
    features: build_features.FeaturesResult
    train: train.TrainResult
    endpoints: ServeEndpoints
    sample: str


def _say(msg: str) -> None:
    print(msg, flush=True)


def main(cfg: UpConfig, settings: Settings,
         on_ready: Callable[[ServeEndpoints], None] | None = None) -> UpResult:
    """Run every stage; ``on_ready(endpoints)`` is called while the app is serving.

    Blocks until Ctrl-C unless ``cfg.once``.
    """
    from serving.client import PredictionClient, format_response

    settings = settings.resolved()
    t: dict[str, float] = {}
    t0 = time.perf_counter()
    env = serve.serve_env_of(settings)
    _say(f"stockray: data dir {settings.data_dir}")
    with local_cluster(settings, extra_env=env, auth=cfg.auth) as ctx:
        t["ray_start_s"] = time.perf_counter() - t0
        _say(f"[1/6] Ray cluster up ({t['ray_start_s']:.1f}s), dashboard "
             f"{dashboard_url(ctx) or 'off'}")

        s = time.perf_counter()
        rep = ingest.main(ingest.IngestConfig(tickers=cfg.tickers, start=cfg.start,
                                              end=cfg.end), settings)
        t["ingest_s"] = time.perf_counter() - s
        _say(f"[2/6] ingested and validated ({t['ingest_s']:.1f}s)\n{ingest.describe(rep)}")

        s = time.perf_counter()
        feats = build_features.main(build_features.FeaturesConfig(engine=cfg.engine), settings)
        t["features_s"] = time.perf_counter() - s
        _say(f"[3/6] features: {feats.rows} rows, {len(feats.tickers)} tickers "
             f"{feats.first_ts}..{feats.last_ts}; Feast applied, {feats.online_tickers} "
             f"tickers materialized online; engine {feats.engine} "
             f"({t['features_s']:.1f}s)")

        s = time.perf_counter()
        tr = train.main(cfg.train, settings)
        t["train_s"] = time.perf_counter() - s
        _say(f"[4/6] trained, registered (alias champion) and exported to ONNX "
             f"({t['train_s']:.1f}s)\n{train.describe(tr)}")

        s = time.perf_counter()
        ep = serve.main(settings)
        t["serve_s"] = time.perf_counter() - s
        _say(f"[5/6] serving ({t['serve_s']:.1f}s): gRPC {ep.grpc_target} "
             f"({'direct ingress' if ep.direct_ingress else 'Serve proxy'}), "
             f"HTTP {ep.http_url}")

        with PredictionClient(ep.grpc_target) as client:
            resp = client.predict(cfg.sample_ticker, explain=True)
        sample = format_response(resp)
        t["to_first_prediction_s"] = time.perf_counter() - t0
        _say(f"[6/6] sample prediction through the gRPC client "
             f"({t['to_first_prediction_s']:.1f}s after start):\n{sample}")
        _say(usage(settings, ep))
        if on_ready is not None:
            on_ready(ep)
        if not cfg.once:
            _say("serving until Ctrl-C ...")
            wait_for_interrupt()
            _say("\nstopping the Ray cluster this command started (Serve included)")
        # No serve.shutdown(): its controller drain takes 30 s here, and leaving the block
        # ends the whole local cluster this command started (ray.shutdown) anyway.
    return UpResult(t, rep.to_dict(), feats, tr, ep, sample)


def usage(settings: Settings, ep: ServeEndpoints) -> str:
    return "\n".join([
        "Call it yourself (from another terminal; token auth is on):",
        f"  stockray predict AAPL --horizon 5 --target {ep.grpc_target}",
        f"  TOKEN=$(cat {settings.auth_path / 'api_token'})",
        (f"  curl -s -X POST {ep.http_url}/v1/predict -H 'content-type: application/json' "
         "-H \"authorization: Bearer $TOKEN\" "
         "-d '{\"ticker\": \"AAPL\", \"horizons\": [5], \"explain\": true}'"),
        (f"  grpcurl -plaintext -H \"authorization: Bearer $TOKEN\" "
         f"-d '{{\"ticker\": \"AAPL\"}}' {ep.grpc_target} "
         "stockray.v1.PredictionService/Predict"),
        f"  MLflow UI: mlflow ui --backend-store-uri {settings.tracking_uri}",
    ])
