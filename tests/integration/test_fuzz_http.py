"""Schema-driven fuzzing of the HTTP API on a real Ray Serve app (token auth as shipped).

schemathesis is not in the local package index, so this does its core job with hypothesis:
it reads the app's own ``/openapi.json``, builds request bodies from each operation's JSON
schema (valid values, boundary numbers, wrong types, missing and extra fields), sends them
with a valid token, and fuzzes the ``authorization`` header. Asserted: only documented status
codes (never 500), a JSON error body with a message, and the service still answers after.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from serving.app import AppArgs
from serving.launch import serve_env, start_serve
from serving.models import ModelSource
from tests.ray_fixtures import private_ray
from tests.serving_fixtures import auth_headers, free_port, make_bundles, synthetic_rows

pytestmark = [pytest.mark.integration, pytest.mark.slow]
DOCUMENTED = {200, 400, 401, 403, 404, 409, 413, 422, 429, 503}
N = int(os.environ.get("FUZZ_EXAMPLES", "300"))
FUZZ = settings(max_examples=N, deadline=None, suppress_health_check=list(HealthCheck))
COUNT: dict[str, int] = {}


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    from ray import serve

    ports = {"grpc": free_port(), "http": free_port(), "pgrpc": free_port()}
    bundles = make_bundles(tmp_path_factory.mktemp("bundles"), horizons=(1, 5))
    with private_ray(serve_env(ports["grpc"]), prefix="srfz-"):
        args = AppArgs(models=ModelSource(bundle_dirs=bundles),
                       reader="tests.serving_fixtures:FakeReader",
                       reader_kwargs={"rows": synthetic_rows()})
        ep = start_serve(args, ports["grpc"], ports["http"], "127.0.0.1",
                         proxy_grpc_port=ports["pgrpc"], timeout_s=180)
        base = ep.http_url.rstrip("/")
        schema = json.loads(urllib.request.urlopen(f"{base}/openapi.json", timeout=30).read())
        yield {"base": base, "schema": schema}
        serve.delete(args.app_name)


def _send(base: str, method: str, path: str, body: bytes | None, headers: dict) -> tuple:
    req = urllib.request.Request(base + path, data=body, method=method,
                                 headers={"content-type": "application/json", **headers})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def _resolve(schema: dict, node: dict) -> dict:
    while "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[1]
        node = schema["components"]["schemas"][name]
    return node


junk = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70),
                 st.floats(allow_nan=False), st.text(max_size=20),
                 st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=5),
                                                                      st.integers(), max_size=2))


def strategy_for(schema: dict, node: dict) -> st.SearchStrategy:
    """Values valid for ``node`` (JSON schema) most of the time, wrong-typed some of it."""
    node = _resolve(schema, node)
    if "anyOf" in node:
        return st.one_of([strategy_for(schema, n) for n in node["anyOf"]])
    t = node.get("type")
    if t == "object":
        props = {k: strategy_for(schema, v) for k, v in node.get("properties", {}).items()}
        req = set(node.get("required", []))
        return st.fixed_dictionaries(
            {k: v for k, v in props.items() if k in req},
            optional={**{k: v for k, v in props.items() if k not in req},
                      "unexpected_field": junk})
    if t == "array":
        item = strategy_for(schema, node.get("items", {}))
        return st.lists(item, max_size=min(node.get("maxItems", 8), 8))
    if t == "integer":
        lo, hi = node.get("minimum", -(2**31)), node.get("maximum", 2**31 - 1)
        return st.one_of(st.integers(lo, hi), st.sampled_from([lo - 1, hi + 1, 0, 1, 5]), junk)
    if t == "boolean":
        return st.one_of(st.booleans(), junk)
    if t == "string":
        return st.one_of(st.sampled_from(["AAPL", "msft", "", "champion", "2024-05-01"]),
                         st.text(max_size=node.get("maxLength", 40)), junk)
    return junk


def _check(status: int, raw: bytes, what: str) -> None:
    assert status in DOCUMENTED, f"{what} -> {status}: {raw[:300]!r}"
    if status != 200:
        body = json.loads(raw)
        assert isinstance(body, dict), f"{what} -> {status}: {body!r}"
        err = body.get("error")
        msg = (err.get("message") if isinstance(err, dict) else None) or body.get("detail")
        assert msg, f"{what} -> {status} without a message: {body}"


def _operations(schema: dict) -> list[tuple[str, str, dict | None]]:
    ops = []
    for path, item in schema["paths"].items():
        for method, op in item.items():
            body = (op.get("requestBody", {}).get("content", {})
                    .get("application/json", {}).get("schema"))
            ops.append((method.upper(), path, body))
    return ops


def test_openapi_lists_the_rpcs(api):
    paths = {p for _, p, _ in _operations(api["schema"])}
    assert {"/v1/predict", "/v1/predict_batch", "/v1/explain"} <= paths


@FUZZ
@given(data=st.data())
def test_fuzz_every_operation_from_the_schema(api, data):
    method, path, body_schema = data.draw(st.sampled_from(_operations(api["schema"])))
    body = None
    if body_schema is not None:
        value = data.draw(st.one_of(strategy_for(api["schema"], body_schema), junk))
        body = json.dumps(value).encode()
    COUNT[path] = COUNT.get(path, 0) + 1
    status, raw = _send(api["base"], method, path, body, auth_headers())
    _check(status, raw, f"{method} {path} {body!r}")


@FUZZ
@given(header=st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=80))
def test_fuzz_http_authorization_header(api, header):
    COUNT["auth"] = COUNT.get("auth", 0) + 1
    status, raw = _send(api["base"], "POST", "/v1/predict", b'{"ticker": "AAPL"}',
                        {"authorization": header})
    _check(status, raw, f"authorization {header!r}")
    good = auth_headers()["authorization"]
    assert status == (200 if header.strip() == good else 401)


def test_service_still_answers(api):
    status, raw = _send(api["base"], "POST", "/v1/predict", b'{"ticker": "AAPL"}',
                        auth_headers())
    assert status == 200 and json.loads(raw)["ticker"] == "AAPL"
    print(f"HTTP fuzz examples per operation: {COUNT}")
