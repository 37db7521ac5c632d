"""Start the app on its public ports, by the fastest path that works.

**Direct ingress owns the public port.** Serve's proxy adds ≈4 ms per call here (STACK.md);
with ``RAY_SERVE_ENABLE_DIRECT_INGRESS=1`` every ingress replica runs its own gRPC and HTTP
server on a port the controller allocates from ``[MIN, MAX)`` per protocol
(``ray/serve/_private/node_port_manager.py``: ``range(min_port, max_port)``; the replica binds
it in ``replica.py::_maybe_start_direct_ingress_servers``). Setting the gRPC range to
``[grpc_port, grpc_port + 1)`` and the HTTP range to ``[http_port, http_port + 1)`` makes the
single ingress replica bind exactly the public ports, and :func:`start_serve` moves Serve's
proxy to two other ports (``proxy_grpc_port``/``proxy_http_port``, still usable). Measured
here: direct ≈1 ms p50 vs ≈4–5 ms through the proxy.

Consequences, by design:

- One ingress replica per node (a one-port range holds one replica). Scale the expensive
  stages with ``mode="split"`` (Predictor/Explainer replicas), or, for several ingress
  replicas, widen the range and front them with HAProxy (``RAY_SERVE_ENABLE_HA_PROXY=1``).
- ``RAY_SERVE_PORT_QUARANTINE_S=0``: a released port is otherwise held back for the HAProxy
  hard-stop window (minutes), so a restarted ingress replica could not re-bind the public port.
- The variables must be in the environment of the process that *starts Ray* (controller and
  replicas read them at import): call :func:`serve_env` and update ``os.environ`` before
  ``ray.init`` / ``ray start``. Without them :func:`start_serve` puts the proxy itself on the
  public ports (the slower but always-working path).
- gRPC binds all interfaces in either path (``gRPCOptions`` has no host); HTTP binds ``host``.
"""

from __future__ import annotations

import os
import time
import urllib.request
from dataclasses import dataclass

from serving.app import AppArgs, build_app

GRPC_SERVICER_FUNCTIONS = [
    "serving.protos.stockray_pb2_grpc.add_PredictionServiceServicer_to_server",
    "grpc_health.v1.health_pb2_grpc.add_HealthServicer_to_server",
]
DIRECT_INGRESS_FLAG = "RAY_SERVE_ENABLE_DIRECT_INGRESS"


def serve_env(grpc_port: int = 9000, http_port: int = 8000) -> dict[str, str]:
    """Environment that makes the ingress replica itself listen on the public ports.

    Set these in ``os.environ`` *before* Ray starts (``ray.init`` or ``ray start``).
    """
    return {
        DIRECT_INGRESS_FLAG: "1",
        "RAY_SERVE_DIRECT_INGRESS_MIN_GRPC_PORT": str(grpc_port),
        "RAY_SERVE_DIRECT_INGRESS_MAX_GRPC_PORT": str(grpc_port + 1),  # exclusive
        "RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT": str(http_port),
        "RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT": str(http_port + 1),  # exclusive
        "RAY_SERVE_PORT_QUARANTINE_S": "0",
    }


def direct_ingress_configured(grpc_port: int, http_port: int) -> bool:
    """True when this process's environment holds :func:`serve_env` for these ports."""
    want = serve_env(grpc_port, http_port)
    return all(os.environ.get(k) == v for k, v in want.items())


@dataclass(frozen=True)
class ServeEndpoints:
    grpc_target: str  # public gRPC host:port
    http_url: str  # public HTTP base URL
    proxy_grpc_target: str  # Serve's proxy (== public when not direct)
    proxy_http_url: str
    direct_ingress: bool


def start_serve(
    args: AppArgs,
    grpc_port: int | None = None,
    http_port: int | None = None,
    host: str | None = None,
    *,
    proxy_grpc_port: int | None = None,
    proxy_http_port: int | None = None,
    direct_ingress: bool | None = None,
    timeout_s: float = 120.0,
) -> ServeEndpoints:
    """Start Serve (Ray must be initialised), run the app, wait until it answers.

    Args:
        args: the app; its ``grpc_port``/``http_port``/``host`` are defaults for the next three.
        grpc_port: public gRPC port.
        http_port: public HTTP port.
        host: HTTP bind address and the address used to reach the endpoints.
        proxy_grpc_port: where Serve's proxy listens in direct mode (default public + 1).
        proxy_http_port: likewise for HTTP (default public + 1).
        direct_ingress: default: whether :func:`serve_env` is in ``os.environ``.
        timeout_s: how long to wait for the health checks.

    Returns:
        The endpoints. Raises ``TimeoutError`` if the public ports never answer.
    """
    from ray import serve
    from ray.serve.config import HTTPOptions, gRPCOptions

    from serving.client import PredictionClient, PredictionError

    gp = args.grpc_port if grpc_port is None else grpc_port
    hp = args.http_port if http_port is None else http_port
    h = args.host if host is None else host
    args = args.model_copy(update={"grpc_port": gp, "http_port": hp, "host": h})
    direct = direct_ingress_configured(gp, hp) if direct_ingress is None else direct_ingress
    if direct and args.ingress_replicas != 1:
        raise ValueError(
            "direct ingress binds the public port from one ingress replica: set "
            "ingress_replicas=1 and scale Predictor/Explainer with mode='split'"
        )
    pgp = (proxy_grpc_port or gp + 1) if direct else gp
    php = (proxy_http_port or hp + 1) if direct else hp
    serve.start(
        http_options=HTTPOptions(host=h, port=php),
        grpc_options=gRPCOptions(port=pgp, grpc_servicer_functions=GRPC_SERVICER_FUNCTIONS),
    )
    serve.run(build_app(args), name=args.app_name, route_prefix="/")
    ep = ServeEndpoints(
        grpc_target=f"{h}:{gp}",
        http_url=f"http://{h}:{hp}",
        proxy_grpc_target=f"{h}:{pgp}",
        proxy_http_url=f"http://{h}:{php}",
        direct_ingress=direct,
    )
    deadline = time.monotonic() + timeout_s
    last: Exception | str = "no attempt"
    with PredictionClient(ep.grpc_target) as client:
        while time.monotonic() < deadline:
            try:
                status = client.health(timeout=2.0)
                with urllib.request.urlopen(f"{ep.http_url}/healthz", timeout=2.0) as r:
                    if status == "SERVING" and r.status == 200:
                        return ep
                last = f"gRPC health {status}, HTTP {r.status}"
            except (PredictionError, OSError) as e:
                last = e
            time.sleep(0.25)
    raise TimeoutError(
        f"app {args.app_name!r} not healthy on {ep.grpc_target} / {ep.http_url} after "
        f"{timeout_s:.0f}s ({last}); direct_ingress={direct}: if True, check serve_env() "
        "was in the environment before Ray started"
    )
