"""serving.launch: the ingress choices' environments (direct / proxy / haproxy), no Ray started."""

from __future__ import annotations

import importlib.util
import stat
from pathlib import Path

import pytest

from serving.launch import INGRESS_MODES, configured_ingress, haproxy_binary, serve_env


def _ray_constants_text() -> str:
    spec = importlib.util.find_spec("ray")
    assert spec is not None and spec.origin is not None
    return (Path(spec.origin).parent / "serve/_private/constants.py").read_text()


def test_haproxy_env_moves_the_fallback_proxy_and_haproxy_ports(tmp_path):
    env = serve_env(
        9100,
        8100,
        ingress="haproxy",
        haproxy_stats_port=8500,
        haproxy_metrics_port=8600,
        haproxy_dir=str(tmp_path),
    )
    assert env["RAY_SERVE_ENABLE_HA_PROXY"] == "1"
    assert env["RAY_SERVE_FALLBACK_PROXY_GRPC_PORT"] == "9101"
    assert env["RAY_SERVE_FALLBACK_PROXY_HTTP_PORT"] == "8101"
    assert env["RAY_SERVE_HAPROXY_STATS_PORT"] == "8500"
    assert env["RAY_SERVE_HAPROXY_METRICS_PORT"] == "8600"
    assert env["RAY_SERVE_HAPROXY_SOCKET_PATH"] == f"{tmp_path}/admin.sock"
    # HAProxy owns the public port: replicas must not be pinned to it.
    assert "RAY_SERVE_DIRECT_INGRESS_MIN_GRPC_PORT" not in env
    with pytest.raises(ValueError, match="pass http_port"):
        serve_env(9100, ingress="haproxy")
    with pytest.raises(ValueError, match="ingress must be one of"):
        serve_env(9100, 8100, ingress="nginx")  # type: ignore[arg-type]
    # Serve's own proxy needs no Ray switches; only our bind host and Serve's message limit
    assert serve_env(9100, 8100, ingress="proxy") == {
        "STOCKRAY_BIND_HOST": "127.0.0.1",
        "RAY_SERVE_GRPC_MAX_MESSAGE_SIZE": str(4 * 1024 * 1024),
    }
    with pytest.raises(ValueError, match="TLS with ingress='haproxy'"):
        serve_env(9100, 8100, ingress="haproxy", tls_cert="c", tls_key="k")


def test_every_variable_we_set_is_one_ray_reads(tmp_path):
    """Guards against a Ray upgrade renaming a knob (a silently ignored variable)."""
    text = _ray_constants_text()
    keys = {
        *serve_env(9100, 8100),
        *serve_env(9100, 8100, ingress="haproxy", haproxy_dir=str(tmp_path)),
    }
    ray_keys = [k for k in keys if not k.startswith("STOCKRAY_")]  # ours: serving.hardening
    assert [k for k in ray_keys if f'"{k}"' not in text] == []


def test_configured_ingress_reads_the_environment(monkeypatch):
    for mode in INGRESS_MODES:
        for k in {*serve_env(9100), *serve_env(9100, 8100, ingress="haproxy")}:
            monkeypatch.delenv(k, raising=False)
        for k, v in serve_env(9100, 8100, ingress=mode).items():  # type: ignore[arg-type]
            monkeypatch.setenv(k, v)
        assert configured_ingress(9100) == mode


def test_haproxy_binary_follows_rays_resolution(monkeypatch, tmp_path):
    fake = tmp_path / "haproxy"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("RAY_SERVE_HAPROXY_BINARY_PATH", str(fake))
    assert haproxy_binary() == str(fake)
    monkeypatch.setenv("RAY_SERVE_HAPROXY_BINARY_PATH", str(tmp_path / "missing"))
    assert haproxy_binary() is None
