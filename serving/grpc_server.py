"""A bare grpcio (asyncio) server around :class:`PredictionService`, with health + reflection.

No Ray: the latency floor for benchmarks, a fallback, and the unit tests' way to check the
error mapping with a real client. ``python -m serving.grpc_server --help`` runs it.

Same access rules as the Serve ingress (``serving.auth``): a Bearer token on every
``PredictionService`` RPC (health open), reflection per ``AccessConfig``, requests larger than
``max_request_bytes`` refused by grpcio before decoding (``RESOURCE_EXHAUSTED``), and TLS /
mTLS when server credentials are given.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import threading
from typing import Self

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection

from serving.auth import AccessConfig, Gate
from serving.config import StageConfig
from serving.errors import status_of
from serving.models import ModelSource
from serving.protos import stockray_pb2 as pb
from serving.protos import stockray_pb2_grpc as pb_grpc
from serving.readers import DEFAULT_READER
from serving.service import FEATURE_STORE_HEALTH, PredictionService

log = logging.getLogger(__name__)
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["PredictionService"].full_name


class PredictionServicer(pb_grpc.PredictionServiceServicer):
    def __init__(self, service: PredictionService, gate: Gate) -> None:
        self._service, self._gate = service, gate

    async def _call(self, fn, request, context, rpc: str):
        try:
            md = context.invocation_metadata() or ()
            self._gate.admit(rpc, next((v for k, v in md if k == "authorization"), None))
            return await fn(request)
        except Exception as e:
            code, message, _ = status_of(e)
            if code == grpc.StatusCode.INTERNAL:
                log.exception("%s failed", fn.__name__)
            await context.abort(code, message)

    async def Predict(self, request, context):
        return await self._call(self._service.predict, request, context, "Predict")

    async def PredictBatch(self, request, context):
        return await self._call(self._service.predict_batch, request, context, "PredictBatch")

    async def Explain(self, request, context):
        return await self._call(self._service.explain, request, context, "Explain")

    async def ListModels(self, request, context):
        return await self._call(self._service.list_models, request, context, "ListModels")


class HealthServicer(health_aio.HealthServicer):
    """grpc.health.v1 with ``stockray.v1.FeatureStore`` computed on each ``Check``: NOT_SERVING
    while the online store's reads fail or time out (``""`` and the PredictionService stay
    SERVING: known tickers are still answered, flagged stale). ``Watch`` on that name sees a
    change when the next ``Check`` notices it."""

    def __init__(self, service: PredictionService) -> None:
        super().__init__()
        self._service = service

    async def Check(self, request, context):
        if request.service == FEATURE_STORE_HEALTH:
            ok = await self._service.feature_store_serving()
            await self.set(FEATURE_STORE_HEALTH, health_pb2.HealthCheckResponse.SERVING if ok
                           else health_pb2.HealthCheckResponse.NOT_SERVING)
        return await super().Check(request, context)


async def start_server(
    service: PredictionService,
    port: int = 0,
    host: str = "127.0.0.1",
    *,
    access: AccessConfig | None = None,
    credentials: grpc.ServerCredentials | None = None,
) -> tuple[grpc.aio.Server, int]:
    """Start the server; returns it and the bound port (``port=0`` picks a free one).

    Args:
        access: auth, reflection and size limits (default ``AccessConfig()``: token auth on,
            keys from :func:`serving.auth.default_auth_dir`).
        credentials: ``serving.tls.server_credentials(...)`` for TLS (None: plaintext).
    """
    access = access or AccessConfig()
    gate = Gate(access, service.audit)
    server = grpc.aio.server(
        options=[("grpc.max_receive_message_length", access.max_request_bytes)]
    )
    pb_grpc.add_PredictionServiceServicer_to_server(PredictionServicer(service, gate), server)
    health = HealthServicer(service)
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    for name in ("", SERVICE_NAME, FEATURE_STORE_HEALTH):
        await health.set(name, health_pb2.HealthCheckResponse.SERVING)
    if access.reflection_on():
        reflection.enable_server_reflection(
            (
                SERVICE_NAME,
                health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                reflection.SERVICE_NAME,
            ),
            server,
        )
    addr = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if credentials is None:
        bound = server.add_insecure_port(addr)
    else:
        bound = server.add_secure_port(addr, credentials)
    await server.start()
    return server, bound


class BackgroundServer:
    """The server on its own event-loop thread (for tests, benchmarks, notebooks)."""

    def __init__(
        self,
        service: PredictionService,
        port: int = 0,
        host: str = "127.0.0.1",
        *,
        access: AccessConfig | None = None,
        credentials: grpc.ServerCredentials | None = None,
    ):
        self._service, self._port, self._host = service, port, host
        self._access, self._credentials = access, credentials
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: grpc.aio.Server | None = None
        self.port = 0

    def __enter__(self) -> Self:
        self._thread.start()
        fut = asyncio.run_coroutine_threadsafe(
            start_server(
                self._service,
                self._port,
                self._host,
                access=self._access,
                credentials=self._credentials,
            ),
            self._loop,
        )
        self._server, self.port = fut.result(timeout=30)
        return self

    @property
    def target(self) -> str:
        return f"{self._host}:{self.port}"

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            asyncio.run_coroutine_threadsafe(self._server.stop(0), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


def parse_args(argv: list[str] | None = None) -> tuple[StageConfig, str, int]:
    """``(stage config, host, port)`` from the command line of :func:`main`."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--port", type=int, default=9000)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--bundle", action="append", default=[], metavar="H=DIR")
    p.add_argument("--tracking-uri", help="MLflow URI; serves stockray-lgbm-h{h}@champion")
    p.add_argument("--horizons", default="1,5,20", help="with --tracking-uri")
    p.add_argument("--reader", default=DEFAULT_READER)
    p.add_argument("--reader-kwarg", action="append", default=[], metavar="K=V")
    a = p.parse_args(argv)
    if bool(a.bundle) == bool(a.tracking_uri):
        p.error("pass --bundle H=DIR (repeatable) or --tracking-uri, not both")
    source = (
        ModelSource(bundle_dirs={int(h): d for h, d in (b.split("=", 1) for b in a.bundle)})
        if a.bundle
        else ModelSource(
            tracking_uri=a.tracking_uri, horizons=[int(h) for h in a.horizons.split(",")]
        )
    )
    cfg = StageConfig(
        models=source,
        reader=a.reader,
        reader_kwargs=dict(kv.split("=", 1) for kv in a.reader_kwarg),
    )
    return cfg, a.host, a.port


def main(argv: list[str] | None = None) -> None:
    """Serve until Ctrl-C."""
    cfg, host, port = parse_args(argv)

    async def run() -> None:
        service = PredictionService(cfg.build_local_stages(), cfg.policy(), audit=cfg.build_audit())
        from serving.hardening import grpc_server_credentials_from_env

        server, bound = await start_server(
            service, port, host, access=cfg.access, credentials=grpc_server_credentials_from_env()
        )
        print(f"serving stockray.v1.PredictionService on {host}:{bound}", flush=True)
        await server.wait_for_termination()

    asyncio.run(run())


if __name__ == "__main__":
    main()
