"""The Serve app as shipped, secured: a real local Ray + Serve (fused, direct ingress) with
token auth, gRPC mTLS and HTTPS from a `stockray certs`-style dev pair; then

- every listening socket of the processes this test started binds loopback, except Ray's own
  core listeners, each listed and asserted as a documented exception (README "Security");
- gRPC on the public port and through Serve's proxy: TLS required, client certificate
  required, token required (UNAUTHENTICATED with a message), health open;
- HTTPS: 401 without a token, 413 for an oversized body (before decoding), 400 for a number
  that overflows int32 (never 500), 400 for a non-ASCII ticker, 429 with retry-after;
- the production profile: reflection off, Explain admin-only.
"""

from __future__ import annotations

import json
import os
import ssl
import time
import urllib.error
import urllib.request

import grpc
import psutil
import pytest

from serving.app import AppArgs
from serving.auth import AccessConfig, add_key, default_auth_dir
from serving.client import PredictionClient, PredictionError
from serving.launch import serve_env, start_serve
from serving.models import ModelSource
from serving.tls import make_dev_certs
from tests.ray_fixtures import private_ray
from tests.serving_fixtures import auth_headers, free_port, make_bundles, synthetic_rows

pytestmark = pytest.mark.integration
LOOPBACK = {"127.0.0.1", "::1", "::ffff:127.0.0.1"}
WILDCARD = {"0.0.0.0", "::"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    from ray import serve

    certs = make_dev_certs(tmp_path_factory.mktemp("certs"))
    ports = {"grpc": free_port(), "http": free_port(), "pgrpc": free_port()}
    env = serve_env(ports["grpc"], tls_cert=str(certs["cert"]), tls_key=str(certs["key"]),
                    tls_client_ca=str(certs["client_cert"]))
    client_env = {"STOCKRAY_TLS_CA": str(certs["cert"]),
                  "STOCKRAY_TLS_CLIENT_CERT": str(certs["client_cert"]),
                  "STOCKRAY_TLS_CLIENT_KEY": str(certs["client_key"])}
    bundles = make_bundles(tmp_path_factory.mktemp("bundles"), horizons=(1, 5))
    audit = tmp_path_factory.mktemp("audit")
    with private_ray({**env, **client_env}, prefix="srsec-"):
        args = AppArgs(
            models=ModelSource(bundle_dirs=bundles),
            reader="tests.serving_fixtures:FakeReader",
            reader_kwargs={"rows": synthetic_rows()},
            access=AccessConfig(max_request_bytes=4096, profile="production"),
            audit_dir=str(audit),
        )
        ep = start_serve(args, ports["grpc"], ports["http"], "127.0.0.1",
                         proxy_grpc_port=ports["pgrpc"], timeout_s=120)
        yield {"ep": ep, "ports": ports, "certs": certs, "audit": audit}
        serve.delete(args.app_name)


def _listeners() -> list[tuple[str, int, str, int]]:
    """(ip, port, process name, pid) of every TCP listener of this process and its children
    (``ray.init(address="local")`` parents GCS and raylet; raylet parents every worker)."""
    me = psutil.Process()
    pids = {me.pid} | {c.pid for c in me.children(recursive=True)}
    out = []
    for c in psutil.net_connections("tcp"):
        if c.status == psutil.CONN_LISTEN and c.pid in pids:
            out.append((c.laddr.ip, c.laddr.port, psutil.Process(c.pid).name(), c.pid))
    return out


def test_every_listener_binds_loopback_or_is_a_documented_ray_exception(stack):
    import ray
    from ray._private.ray_constants import DEFAULT_DASHBOARD_AGENT_LISTEN_PORT
    from ray.autoscaler._private.constants import AUTOSCALER_METRIC_PORT
    from ray.dashboard.consts import DASHBOARD_METRIC_PORT

    ports = stack["ports"]
    (node,) = ray.nodes()
    gcs_port = int(ray.get_runtime_context().gcs_address.rsplit(":", 1)[1])
    # Ray 2.60's own listeners: C++ gRPC servers (GCS, raylet node/object manager, each
    # worker's core-worker server) and the agents' fixed binds. No option moves them
    # (ray.init turns a loopback node IP into the machine's address); Ray token auth guards
    # them. Each one is named here and must match what Ray reports.
    node_ports = {
        gcs_port: "gcs_server",
        node["NodeManagerPort"]: "raylet",
        node["ObjectManagerPort"]: "raylet",
        node["MetricsExportPort"]: "ray::DashboardAgent",  # Prometheus exporter
        node["MetricsAgentPort"]: "ray::DashboardAgent",  # metrics agent gRPC
        node["RuntimeEnvAgentPort"]: "ray::RuntimeEnvAgent",  # binds the node IP
        # the agent's HTTP server binds the node IP (and loopback); fixed default 52365,
        # reported as -1 when another Ray on the machine already holds it
        DEFAULT_DASHBOARD_AGENT_LISTEN_PORT: "ray::DashboardAgent",
    }

    # prometheus_client servers of the autoscaler monitor and the dashboard head (python
    # processes): fixed ports, all interfaces unless the head IP is loopback, which ray.init
    # does not allow. Absent when another Ray on the machine holds the port.
    metrics_ports = {AUTOSCALER_METRIC_PORT, DASHBOARD_METRIC_PORT}
    listeners = _listeners()
    ours = {ports["grpc"], ports["http"], ports["pgrpc"]}
    seen = {p for _, p, _, _ in listeners}
    assert ours <= seen, f"app ports not listening: {ours - seen}"
    unexplained, core_worker = [], {}
    for ip, port, name, pid in listeners:
        if ip in LOOPBACK:
            continue
        assert port not in ours, f"{name} binds public port {port} on {ip}"
        if port in node_ports:
            assert name == node_ports[port], (ip, port, name)
            continue
        if port in metrics_ports and name.startswith("python"):
            continue
        # One core-worker gRPC server per Ray worker process (and the driver): C++, wildcard.
        if ip in WILDCARD and (name.startswith("ray::") or pid == os.getpid()):
            core_worker.setdefault(pid, []).append(port)
            continue
        unexplained.append((ip, port, name))
    assert unexplained == [], f"listeners neither loopback nor documented: {unexplained}"
    extra = {pid: p for pid, p in core_worker.items() if len(p) > 1}
    assert extra == {}, f"a Ray worker has more than its core-worker port open: {extra}"
    # Serve's own servers, which Ray hard-codes to [::], are loopback (serving.hardening)
    proxy = [x for x in listeners if x[1] == ports["pgrpc"]]
    assert proxy and all(ip in LOOPBACK for ip, *_ in proxy)


def test_grpc_requires_tls_client_cert_and_token(stack):
    ep = stack["ep"]
    for target in (ep.grpc_target, ep.proxy_grpc_target):
        with PredictionClient(target) as c:  # env: CA + client pair; token from the key dir
            assert c.tls and c.health() == "SERVING"
            assert [p.horizon for p in c.predict("AAPL").predictions] == [1, 5]
        with PredictionClient(target, token="") as c:
            assert c.health() == "SERVING"  # health stays open
            with pytest.raises(PredictionError) as ei:
                c.predict("AAPL")
            assert ei.value.code == grpc.StatusCode.UNAUTHENTICATED, target
            assert "missing token" in ei.value.details
        with PredictionClient(target, token="sr_not_a_key") as c, pytest.raises(
            PredictionError
        ) as ei:
            c.predict("AAPL")
        assert ei.value.code == grpc.StatusCode.UNAUTHENTICATED
        with PredictionClient(target, tls_ca="") as c, pytest.raises(PredictionError) as ei:
            c.predict("AAPL", timeout=3)  # plaintext to a TLS port
        assert ei.value.code == grpc.StatusCode.UNAVAILABLE
    pair = ("STOCKRAY_TLS_CLIENT_CERT", "STOCKRAY_TLS_CLIENT_KEY")
    saved = {k: os.environ.pop(k) for k in pair}
    try:
        with PredictionClient(ep.grpc_target) as c, pytest.raises(PredictionError) as ei:
            c.predict("AAPL", timeout=3)  # no client certificate: mTLS refuses
        assert ei.value.code == grpc.StatusCode.UNAVAILABLE
    finally:
        os.environ.update(saved)


def _https(stack, path, body=None, headers=None, raw: bytes | None = None):
    ctx = ssl.create_default_context(cafile=str(stack["certs"]["cert"]))
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(
        f"{stack['ep'].http_url}{path}", data=data,
        headers={"content-type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=10, context=ctx) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def test_https_auth_limits_and_validation(stack):
    assert stack["ep"].http_url.startswith("https://")
    status, _ = _https(stack, "/healthz")
    assert status == 200
    status, body = _https(stack, "/v1/predict", {"ticker": "AAPL"})
    assert status == 401 and body["error"]["code"] == "UNAUTHENTICATED", body
    status, body = _https(stack, "/v1/predict", {"ticker": "AAPL"},
                          {"authorization": "Bearer nope"})
    assert status == 401 and "invalid token" in body["error"]["message"]
    ok = auth_headers()
    status, body = _https(stack, "/v1/predict", {"ticker": "AAPL"}, ok)
    assert status == 200 and body["ticker"] == "AAPL"
    big = json.dumps({"tickers": ["AAPL"] * 2000}).encode()
    status, body = _https(stack, "/v1/predict_batch", headers=ok, raw=big)
    assert status == 413 and "limit" in body["error"]["message"]
    status, body = _https(stack, "/v1/predict", {"ticker": "AAPL", "top_k": 2**40}, ok)
    assert status == 400 and body["error"]["code"] == "INVALID_ARGUMENT", body
    assert "top_k" in body["error"]["message"]
    status, body = _https(stack, "/v1/predict", {"ticker": "AAPL", "horizons": [2**31]}, ok)
    assert status == 400 and "horizons" in body["error"]["message"]
    status, body = _https(stack, "/v1/predict", {"ticker": "ÄAPL"}, ok)
    assert status == 400 and "ASCII" in body["error"]["message"]


def test_rate_limit_is_429_with_retry_after(stack):
    token = add_key(default_auth_dir(), "slow-http", ["predict"], rate_per_s=0.2, burst=1)
    hdr = {"authorization": f"Bearer {token}"}
    deadline = time.monotonic() + 10
    status = 401
    while status == 401 and time.monotonic() < deadline:  # replicas re-read keys within 1 s
        time.sleep(0.3)
        status, body = _https(stack, "/v1/predict", {"ticker": "AAPL"}, hdr)
    assert status == 200, body
    ctx = ssl.create_default_context(cafile=str(stack["certs"]["cert"]))
    req = urllib.request.Request(f"{stack['ep'].http_url}/v1/predict",
                                 data=json.dumps({"ticker": "AAPL"}).encode(),
                                 headers={"content-type": "application/json", **hdr})
    with pytest.raises(urllib.error.HTTPError) as ei:
        urllib.request.urlopen(req, timeout=10, context=ctx)
    assert ei.value.code == 429 and int(ei.value.headers["retry-after"]) >= 1
    assert "retry after" in json.loads(ei.value.read())["error"]["message"]


def test_production_profile_reflection_off_and_explain_admin(stack):
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    from serving.tls import channel_credentials

    analyst = add_key(default_auth_dir(), "analyst", ["predict", "explain"])
    c = stack["certs"]
    creds = channel_credentials(c["cert"], c["client_cert"], c["client_key"])
    for target in (stack["ep"].grpc_target, stack["ep"].proxy_grpc_target):
        with grpc.secure_channel(target, creds) as ch:
            stub = reflection_pb2_grpc.ServerReflectionStub(ch)
            req = reflection_pb2.ServerReflectionRequest(list_services="")
            with pytest.raises(grpc.RpcError) as ei:
                next(iter(stub.ServerReflectionInfo(iter([req]), timeout=10)))
            assert ei.value.code() == grpc.StatusCode.UNIMPLEMENTED, target
    with PredictionClient(stack["ep"].grpc_target, token=analyst) as cl:
        deadline = time.monotonic() + 10
        while True:  # replicas re-read keys within 1 s
            try:
                cl.predict("AAPL")
                break
            except PredictionError as e:
                if e.code != grpc.StatusCode.UNAUTHENTICATED or time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
        with pytest.raises(PredictionError) as ei:
            cl.explain("AAPL")
        assert ei.value.code == grpc.StatusCode.PERMISSION_DENIED  # production: admin only
    with PredictionClient(stack["ep"].grpc_target) as cl:  # owner key: admin
        assert cl.explain("AAPL").explanations


def test_refusals_are_audited_without_tokens(stack):
    from serving.audit import read_audit, verify_audit

    status, _ = _https(stack, "/v1/predict", {"ticker": "MSFT"}, {"authorization": "Bearer sr_bogus_Q7"})
    assert status == 401
    ok = auth_headers()
    assert _https(stack, "/v1/predict", raw=b'{"ticker": "' + b"A" * 5000 + b'"}', headers=ok)[0] == 413
    assert _https(stack, "/v1/predict", {"ticker": "AAPL", "top_k": "many"}, ok)[0] == 400
    assert _https(stack, "/v1/predict", {"ticker": "AAPL"}, ok)[0] == 200
    recs, bad = read_audit(stack["audit"])
    codes = {r.get("error", {}).get("code") for r in recs}
    assert {"UNAUTHENTICATED", "RESOURCE_EXHAUSTED", "INVALID_ARGUMENT"} <= codes, codes
    names = {r["key"] for r in recs if "error" not in r}
    assert "owner" in names and names <= {"owner", "analyst", "slow-http"}  # names, not tokens
    raw = b"".join(p.read_bytes() for p in stack["audit"].glob("*.jsonl"))
    token = auth_headers()["authorization"].split()[1].encode()
    assert token not in raw and b"sr_bogus_Q7" not in raw and b"sr_not_a_key" not in raw and bad == 0
    assert verify_audit(stack["audit"]).ok
