"""Start the app on its public ports, by the fastest path that works.

**Direct ingress owns the public gRPC port.** Serve's proxy adds ≈4 ms per call here
(STACK.md); with ``RAY_SERVE_ENABLE_DIRECT_INGRESS=1`` every ingress replica runs its own gRPC
server on a port the controller allocates from ``[MIN, MAX)``
(``ray/serve/_private/node_port_manager.py``: ``range(min_port, max_port)``; the replica binds
it in ``replica.py::_maybe_start_direct_ingress_servers``). :func:`serve_env` sets the gRPC range
to ``[grpc_port, grpc_port + 1)``, so the single ingress replica binds exactly the public port,
and :func:`start_serve` moves Serve's gRPC proxy to another port (``proxy_grpc_port``, default
public + 1, still usable). Measured: see ``bench/serving_quick.py``.

**HTTP stays on Serve's proxy** (public ``http_port``). Pinning HTTP the same way does not
survive a replica restart: Serve binds the replica's HTTP socket without ``SO_REUSEADDR``
(``http_util.start_asgi_http_server``), so server-side TIME_WAIT connections from recent
requests make the re-bind fail for ~60 s, and the allocator then *blocks* that port for good
(seen on Ray 2.60). grpcio sets ``SO_REUSEADDR``, so the gRPC port re-binds at once. The
replica's own HTTP server takes a port from Ray's default range (30000–31000), unused.

Consequences, by design:

- One ingress replica per node (a one-port range holds one replica). Scale the expensive
  stages with ``mode="split"`` (Predictor/Explainer replicas), or, for several ingress
  replicas, widen the range and front them with HAProxy (``RAY_SERVE_ENABLE_HA_PROXY=1``).
- A redeploy (new app config or code) is stop-then-start on the public port: the new replica
  can bind only once the old one released it; Serve retries a failed start 3 times and keeps
  the old version if all fail. ``RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S=0`` (its 30 s
  default exists to let a load balancer deregister the replica; none sits in front here —
  in-flight requests are still drained) and ``RAY_SERVE_PORT_QUARANTINE_S=0`` (default holds a
  released port back for the HAProxy hard-stop window) keep that gap to seconds.
- The variables must be in the environment of the process that *starts Ray* (controller and
  replicas read them at import): update ``os.environ`` with :func:`serve_env` before
  ``ray.init`` / ``ray start``. Without them :func:`start_serve` puts the proxy itself on the
  public gRPC port (the slower but always-working path).
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


def serve_env(grpc_port: int = 9000, http_port: int | None = None) -> dict[str, str]:
    """Environment that makes the ingress replica itself listen on the public gRPC port.

    Set these in ``os.environ`` *before* Ray starts (``ray.init`` or ``ray start``).

    Args:
        grpc_port: public gRPC port (bound by the ingress replica).
        http_port: public HTTP port, served by Serve's proxy (not pinned, see the module
            docstring); only checked not to collide with ``grpc_port`` or the gRPC proxy's
            default ``grpc_port + 1``.
    """
    if http_port is not None and http_port in (grpc_port, grpc_port + 1):
        raise ValueError(
            f"http_port {http_port} collides with gRPC port {grpc_port} or its proxy "
            f"({grpc_port + 1}): choose another"
        )
    return {
        DIRECT_INGRESS_FLAG: "1",
        "RAY_SERVE_DIRECT_INGRESS_MIN_GRPC_PORT": str(grpc_port),
        "RAY_SERVE_DIRECT_INGRESS_MAX_GRPC_PORT": str(grpc_port + 1),  # exclusive bound
        "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "0",
        "RAY_SERVE_PORT_QUARANTINE_S": "0",
    }


def direct_ingress_configured(grpc_port: int) -> bool:
    """True when this process's environment holds :func:`serve_env` for ``grpc_port``."""
    return all(os.environ.get(k) == v for k, v in serve_env(grpc_port).items())


@dataclass(frozen=True)
class ServeEndpoints:
    grpc_target: str  # public gRPC host:port
    http_url: str  # public HTTP base URL
    proxy_grpc_target: str  # Serve's gRPC proxy (== grpc_target when not direct)
    direct_ingress: bool


def start_serve(
    args: AppArgs,
    grpc_port: int | None = None,
    http_port: int | None = None,
    host: str | None = None,
    *,
    proxy_grpc_port: int | None = None,
    direct_ingress: bool | None = None,
    timeout_s: float = 120.0,
) -> ServeEndpoints:
    """Start Serve (Ray must be initialised), run the app, wait until it answers.

    Args:
        args: the app; its ``grpc_port``/``http_port``/``host`` are defaults for the next three.
        grpc_port: public gRPC port.
        http_port: public HTTP port.
        host: HTTP bind address and the address used to reach the endpoints.
        proxy_grpc_port: where Serve's gRPC proxy listens in direct mode (default public + 1).
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
    direct = direct_ingress_configured(gp) if direct_ingress is None else direct_ingress
    if direct and args.ingress_replicas != 1:
        raise ValueError(
            "direct ingress binds the public port from one ingress replica: set "
            "ingress_replicas=1 and scale Predictor/Explainer with mode='split'"
        )
    pgp = (proxy_grpc_port or gp + 1) if direct else gp
    serve.start(
        http_options=HTTPOptions(host=h, port=hp),
        grpc_options=gRPCOptions(port=pgp, grpc_servicer_functions=GRPC_SERVICER_FUNCTIONS),
    )
    serve.run(build_app(args), name=args.app_name, route_prefix="/")
    ep = ServeEndpoints(
        grpc_target=f"{h}:{gp}",
        http_url=f"http://{h}:{hp}",
        proxy_grpc_target=f"{h}:{pgp}",
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
