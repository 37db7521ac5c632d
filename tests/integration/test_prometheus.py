"""Metrics reach a real Prometheus: a private Ray with the Serve app, Debian's `prometheus`
started by the test on loopback with `cluster/prometheus.yml` (pointed at this cluster's
discovery file, a 1 s scrape; `tests.prometheus_fixtures`), predictions sent over gRPC, our
series queried back through Prometheus's HTTP API; a pipeline gauge too, and the alert rules
loaded."""

from __future__ import annotations

import json
import urllib.request

import pytest

from features.telemetry import record_pipeline
from serving.app import AppArgs
from serving.client import PredictionClient, PredictionError
from serving.launch import serve_env, start_serve
from serving.models import ModelSource
from tests.prometheus_fixtures import PROMETHEUS, prometheus, wait_for
from tests.ray_fixtures import private_ray
from tests.serving_fixtures import free_port, make_bundles, synthetic_rows

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(PROMETHEUS is None, reason="make sysdeps installs prometheus")]


def test_serving_and_pipeline_series_reach_prometheus(tmp_path):
    grpc_port, http_port = free_port(), free_port()
    env = {**serve_env(grpc_port), "RAY_metrics_report_interval_ms": "1000"}
    with private_ray(env, prefix="srp-", dashboard_port=free_port()):
        args = AppArgs(models=ModelSource(bundle_dirs=make_bundles(tmp_path / "b")),
                       reader="tests.serving_fixtures:FakeReader",
                       reader_kwargs={"rows": synthetic_rows()})
        ep = start_serve(args, grpc_port, http_port, "127.0.0.1", timeout_s=120)
        with prometheus(tmp_path) as base:
            with PredictionClient(ep.grpc_target) as c:
                for i in range(20):
                    c.predict(["AAPL", "MSFT", "NVDA"][i % 3], [1, 5], explain=i % 2 == 0)
                for _ in range(3):
                    with pytest.raises(PredictionError):
                        c.predict("ZZZZ", [5])
            assert record_pipeline("stockray_rows_ingested", 1234, source="bokeh")
            ok = wait_for(base, 'ray_stockray_requests_total{rpc="Predict",code="OK"}',
                          lambda r: sum(float(x["value"][1]) for x in r) >= 20)
            assert ok[0]["metric"]["rpc"] == "Predict"
            nf = wait_for(base, 'ray_stockray_requests_total{code="NOT_FOUND"}',
                          lambda r: sum(float(x["value"][1]) for x in r) >= 3)
            assert sum(float(x["value"][1]) for x in nf) == 3
            preds = wait_for(base, "sum by (horizon) (ray_stockray_predictions_total)",
                             lambda r: len(r) == 2)
            assert {x["metric"]["horizon"]: float(x["value"][1]) for x in preds} == \
                {"1": 20.0, "5": 20.0}
            lat = wait_for(base, 'ray_stockray_request_latency_ms_count{rpc="Predict"}',
                           lambda r: sum(float(x["value"][1]) for x in r) >= 23)
            assert lat
            wait_for(base, "ray_stockray_explain_latency_ms_count", lambda r: True)
            wait_for(base, 'ray_stockray_feature_cache_total{result="hit"}', lambda r: True)
            g = wait_for(base, 'ray_stockray_rows_ingested{source="bokeh"}', lambda r: True,
                         timeout=30)
            assert float(g[0]["value"][1]) == 1234.0
            with urllib.request.urlopen(f"{base}/api/v1/rules", timeout=5) as r:
                groups = json.loads(r.read())["data"]["groups"]
            assert {g["name"] for g in groups} == {"stockray-serving", "stockray-pipeline"}
