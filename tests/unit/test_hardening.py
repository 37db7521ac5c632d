"""serving.hardening against the installed Ray: the patched names exist and the rewrites bind
the configured host (the end-to-end check is tests/integration/test_serve_security.py)."""

from __future__ import annotations

import pytest

from serving import hardening


def test_haproxy_template_binds_the_host(monkeypatch):
    from ray.serve._private.haproxy_templates import HAPROXY_CONFIG_TEMPLATE

    monkeypatch.setenv(hardening.BIND_HOST_ENV, "10.1.2.3")
    out = hardening.patch_haproxy_template(HAPROXY_CONFIG_TEMPLATE)
    assert "bind 10.1.2.3:{{ config.stats_port }}" in out
    assert "bind 10.1.2.3:{{ config.metrics_port }}" in out
    assert "bind *:" not in out and "bind :{{" not in out
    with pytest.raises(RuntimeError, match="template changed"):
        hardening.patch_haproxy_template("listen stats\n  bind 1.2.3.4:1\n")


def test_grpc_address_rewrite(monkeypatch):
    monkeypatch.delenv(hardening.BIND_HOST_ENV, raising=False)
    assert hardening._host_port("[::]:9000") == "127.0.0.1:9000"
    monkeypatch.setenv(hardening.BIND_HOST_ENV, "::1")
    assert hardening._host_port("[::]:0") == "[::1]:0"


def test_ray_still_has_what_we_patch():
    import inspect

    from ray.serve._private import default_impl, grpc_util, replica

    assert callable(default_impl.add_grpc_address) and callable(replica.add_port_to_grpc_server)
    # the wildcard binds hardening exists for (a Ray upgrade that adds a host option should
    # make us drop the patch, not keep it silently)
    assert "[::]:{grpc_options.port}" in inspect.getsource(grpc_util.start_grpc_server)
