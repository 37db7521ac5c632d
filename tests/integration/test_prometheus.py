"""Metrics reach a real Prometheus: a private Ray with the Serve app, Debian's `prometheus`
started by the test on loopback with `cluster/prometheus.yml` (pointed at this cluster's
discovery file, a 1 s scrape), predictions sent over gRPC, our series queried back through
Prometheus's HTTP API; a pipeline gauge too, and the alert rules loaded."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml

from features.telemetry import record_pipeline
from serving.app import AppArgs
from serving.client import PredictionClient, PredictionError
from serving.launch import serve_env, start_serve
from serving.models import ModelSource
from tests.ray_fixtures import private_ray
from tests.serving_fixtures import free_port, make_bundles, synthetic_rows

PROMETHEUS = shutil.which("prometheus")
CLUSTER = Path(__file__).resolve().parents[2] / "cluster"
pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(PROMETHEUS is None, reason="make sysdeps installs prometheus")]


def _query(base: str, q: str) -> list[dict]:
    url = f"{base}/api/v1/query?{urllib.parse.urlencode({'query': q})}"
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())["data"]["result"]


def _wait(base: str, q: str, ok, timeout: float = 90.0) -> list[dict]:
    deadline, got = time.monotonic() + timeout, []
    while time.monotonic() < deadline:
        try:
            got = _query(base, q)
        except OSError:
            got = []
        if got and ok(got):
            return got
        time.sleep(1.0)
    names = sorted({x["metric"]["__name__"] for x in _query(base, '{__name__=~"ray_stockray.*"}')})
    raise AssertionError(f"{q}: not as expected after {timeout}s: {got}; stockray series "
                         f"present: {names}")


def test_serving_and_pipeline_series_reach_prometheus(tmp_path):
    import ray

    grpc_port, http_port = free_port(), free_port()
    env = {**serve_env(grpc_port), "RAY_metrics_report_interval_ms": "1000"}
    with private_ray(env, prefix="srp-", dashboard_port=free_port()):
        session = Path(ray._private.worker._global_node.get_temp_dir_path())
        args = AppArgs(models=ModelSource(bundle_dirs=make_bundles(tmp_path / "b")),
                       reader="tests.serving_fixtures:FakeReader",
                       reader_kwargs={"rows": synthetic_rows()})
        ep = start_serve(args, grpc_port, http_port, "127.0.0.1", timeout_s=120)
        # cluster/prometheus.yml, pointed at this cluster and scraping every second
        cfg = yaml.safe_load((CLUSTER / "prometheus.yml").read_text())
        cfg["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
        cfg["rule_files"] = [str(CLUSTER / p) for p in cfg["rule_files"]]
        discovery = session / "prom_metrics_service_discovery.json"
        cfg["scrape_configs"][0]["file_sd_configs"][0]["files"] = [str(discovery)]
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(cfg))
        prom_port = free_port()
        with open(tmp_path / "prometheus.log", "w") as log:
            proc = subprocess.Popen(
                [PROMETHEUS, f"--config.file={tmp_path / 'prometheus.yml'}",
                 f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                 f"--web.listen-address=127.0.0.1:{prom_port}"],
                stdout=subprocess.DEVNULL, stderr=log)
        base = f"http://127.0.0.1:{prom_port}"
        try:
            with PredictionClient(ep.grpc_target) as c:
                for i in range(20):
                    c.predict(["AAPL", "MSFT", "NVDA"][i % 3], [1, 5], explain=i % 2 == 0)
                for _ in range(3):
                    with pytest.raises(PredictionError):
                        c.predict("ZZZZ", [5])
            assert record_pipeline("stockray_rows_ingested", 1234, source="bokeh")
            ok = _wait(base, 'ray_stockray_requests_total{rpc="Predict",code="OK"}',
                       lambda r: sum(float(x["value"][1]) for x in r) >= 20)
            assert ok[0]["metric"]["rpc"] == "Predict"
            nf = _wait(base, 'ray_stockray_requests_total{code="NOT_FOUND"}',
                       lambda r: sum(float(x["value"][1]) for x in r) >= 3)
            assert sum(float(x["value"][1]) for x in nf) == 3
            preds = _wait(base, "sum by (horizon) (ray_stockray_predictions_total)",
                          lambda r: len(r) == 2)
            assert {x["metric"]["horizon"]: float(x["value"][1]) for x in preds} == \
                {"1": 20.0, "5": 20.0}
            lat = _wait(base, 'ray_stockray_request_latency_ms_count{rpc="Predict"}',
                        lambda r: sum(float(x["value"][1]) for x in r) >= 23)
            assert lat
            _wait(base, "ray_stockray_explain_latency_ms_count", lambda r: True)
            _wait(base, 'ray_stockray_feature_cache_total{result="hit"}', lambda r: True)
            g = _wait(base, 'ray_stockray_rows_ingested{source="bokeh"}', lambda r: True,
                      timeout=30)
            assert float(g[0]["value"][1]) == 1234.0
            with urllib.request.urlopen(f"{base}/api/v1/rules", timeout=5) as r:
                groups = json.loads(r.read())["data"]["groups"]
            assert {g["name"] for g in groups} == {"stockray-serving", "stockray-pipeline"}
        finally:
            proc.terminate()
            proc.wait(timeout=30)
