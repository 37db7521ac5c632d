"""Auth and TLS overhead on ``Predict``, side by side in one run: plaintext without auth vs
Bearer token vs token + TLS (and token + mTLS), on the bare grpcio server.

    .venv/bin/python -m bench.serving_auth --calls 300 --rounds 5 --out data/bench/serving_auth.json

The four servers share one ``PredictionService`` (LightGBM 300 trees x 30 features, horizons
1/5/20, ``explain=False`` so the transport's share is visible) and are measured in interleaved
rounds (A B C D, A B C D, ...) so drift in the machine's load hits every variant alike. The
bare server runs the same :class:`serving.auth.Gate` as the Serve ingress; the Serve path adds
its own fixed costs on top; ``serve_direct_ingress`` measures the same through Ray Serve
(see :func:`run_serve` for what is and is not interleaved there). The load average is recorded with the
figures: on a shared box absolute numbers move, the ratios are the result.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.serving_quick import N_TICKERS, BenchReader, make_bundles


def _latencies(client, calls: int, offset: int) -> np.ndarray:
    tickers = [f"T{i:03d}" for i in range(N_TICKERS)]
    lat = np.empty(calls)
    for i in range(calls):
        t0 = time.perf_counter()
        client.predict(tickers[(offset + i) % N_TICKERS], explain=False)
        lat[i] = time.perf_counter() - t0
    return lat * 1e3


def run(calls: int, rounds: int) -> dict:
    from serving.auth import AccessConfig, client_token, ensure_auth_dir
    from serving.client import PredictionClient
    from serving.grpc_server import BackgroundServer
    from serving.lookup import FeatureLookup
    from serving.models import ModelSource
    from serving.modelset import ServedModels
    from serving.service import LocalStages, PredictionService
    from serving.tls import make_dev_certs, server_credentials

    tmp = Path(tempfile.mkdtemp(prefix="sr-bench-auth-"))
    dirs = make_bundles(tmp / "bundles")
    served = ServedModels({"champion": ModelSource(bundle_dirs=dirs)}, explain_cache_size=0)
    svc = PredictionService(LocalStages(FeatureLookup(BenchReader()), served))
    auth_dir = tmp / "auth"
    ensure_auth_dir(auth_dir)
    token = client_token(auth_dir)
    certs = make_dev_certs(tmp / "certs")
    on = AccessConfig(auth_dir=str(auth_dir))
    variants = {
        "plaintext_no_auth": ({"access": AccessConfig(auth=False)}, {"token": "", "tls_ca": ""}),
        "token": ({"access": on}, {"token": token, "tls_ca": ""}),
        "token_tls": (
            {"access": on, "credentials": server_credentials(certs["cert"], certs["key"])},
            {"token": token, "tls_ca": str(certs["cert"])},
        ),
        "token_mtls": (
            {"access": on, "credentials": server_credentials(
                certs["cert"], certs["key"], client_ca=certs["client_cert"])},
            {"token": token, "tls_ca": str(certs["cert"]),
             "client_cert": str(certs["client_cert"]), "client_key": str(certs["client_key"])},
        ),
    }
    servers, clients = {}, {}
    try:
        for name, (skw, ckw) in variants.items():
            servers[name] = BackgroundServer(svc, **skw).__enter__()
            clients[name] = PredictionClient(servers[name].target, **ckw)
            for i in range(N_TICKERS):  # warm-up: connection, TLS handshake, caches
                clients[name].predict(f"T{i:03d}", explain=False)
        samples: dict[str, list[np.ndarray]] = {n: [] for n in variants}
        for r in range(rounds):
            for name in variants:
                samples[name].append(_latencies(clients[name], calls, r * calls))
    finally:
        for c in clients.values():
            c.close()
        for s in servers.values():
            s.__exit__(None, None, None)
    return _summary(samples)


def run_serve(calls: int, rounds: int) -> dict:
    """The same variants through Ray Serve's direct ingress (public port = the replica).

    Auth is per app, so ``no auth`` and ``token`` alternate by redeploying on one cluster
    (rounds interleaved); TLS is per cluster (the Ray processes read ``STOCKRAY_TLS_*`` at
    start), so ``token_tls`` runs on a second cluster afterwards: not interleaved with the
    others, compare it with care.
    """
    import shutil

    import ray
    from ray import serve

    from bench.serving_quick import REPO, free_port
    from serving.app import AppArgs
    from serving.auth import AccessConfig, client_token, ensure_auth_dir
    from serving.client import PredictionClient
    from serving.hardening import runtime_env
    from serving.launch import serve_env, start_serve
    from serving.models import ModelSource
    from serving.tls import make_dev_certs

    tmp = Path(tempfile.mkdtemp(prefix="sr-bench-auth-serve-"))
    bundles = make_bundles(tmp / "bundles")
    auth_dir = tmp / "auth"
    ensure_auth_dir(auth_dir)
    token = client_token(auth_dir)
    certs = make_dev_certs(tmp / "certs", client=False)
    base = {"models": ModelSource(bundle_dirs=bundles), "reader": "bench.serving_quick:BenchReader",
            "explain_cache_size": 0}
    samples: dict[str, list[np.ndarray]] = {}

    def cluster(tls: bool, plan: list[tuple[str, bool]]) -> None:
        gp, pgp, hp = free_port(), free_port(), free_port()
        env = serve_env(gp, **({"tls_cert": str(certs["cert"]), "tls_key": str(certs["key"])}
                               if tls else {}))
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        temp_dir = tempfile.mkdtemp(prefix="/tmp/srs-bench-auth-")
        ray.init(address="local", num_cpus=2, include_dashboard=False, _temp_dir=temp_dir,
                 runtime_env=runtime_env({"env_vars": {"PYTHONPATH": str(REPO)}}),
                 log_to_driver=False)
        try:
            for r, (name, auth) in enumerate(plan):
                args = AppArgs(**base, access=AccessConfig(auth=auth, auth_dir=str(auth_dir)))
                ca = str(certs["cert"]) if tls else ""
                os.environ["STOCKRAY_TLS_CA"] = ca  # start_serve's health check
                ep = start_serve(args, gp, hp, "127.0.0.1", proxy_grpc_port=pgp)
                with PredictionClient(ep.grpc_target, token=token if auth else "",
                                      tls_ca=ca) as c:
                    for i in range(N_TICKERS):
                        c.predict(f"T{i:03d}", explain=False)
                    samples.setdefault(name, []).append(_latencies(c, calls, r * calls))
                serve.delete(args.app_name)
        finally:
            os.environ.pop("STOCKRAY_TLS_CA", None)
            serve.shutdown()
            ray.shutdown()
            shutil.rmtree(temp_dir, ignore_errors=True)
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

    cluster(False, [("plaintext_no_auth", False), ("token", True)] * rounds)
    cluster(True, [("token_tls", True)] * rounds)
    return _summary(samples)


def _summary(samples: dict[str, list[np.ndarray]]) -> dict:
    out = {}
    base = float(np.percentile(np.concatenate(samples["plaintext_no_auth"]), 50))
    for name, parts in samples.items():
        ms = np.concatenate(parts)
        p50 = float(np.percentile(ms, 50))
        out[name] = {
            "p50_ms": p50,
            "p99_ms": float(np.percentile(ms, 99)),
            "mean_ms": float(ms.mean()),
            "p50_ratio_vs_plaintext": p50 / base,
            "p50_per_round_ms": [float(np.percentile(p, 50)) for p in parts],
            "calls": int(ms.size),
        }
    return out


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--calls", type=int, default=300, help="Predicts per variant per round.")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--no-serve", action="store_true", help="skip the Ray Serve variants")
    a = p.parse_args(argv)
    load_before = os.getloadavg()
    t0 = time.time()
    res = {
        "bench": "serving_auth",
        "server": "bare grpcio (serving.grpc_server), one process; client: one thread, "
                  "sequential unary Predict, explain=False, 3 horizons",
        "variants": run(a.calls, a.rounds),
        "serve_direct_ingress": None if a.no_serve else run_serve(a.calls, a.rounds),
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "cpu_count": os.cpu_count(),
        "seconds": time.time() - t0,
    }
    text = json.dumps(res, indent=2)
    print(text)
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(text)
    return res


if __name__ == "__main__":
    main()
