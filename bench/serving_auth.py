"""Auth and TLS overhead on ``Predict``, side by side in one run: plaintext without auth vs
Bearer token vs token + TLS (and token + mTLS), on the bare grpcio server.

    .venv/bin/python -m bench.serving_auth --calls 300 --rounds 5 --out data/bench/serving_auth.json

The four servers share one ``PredictionService`` (LightGBM 300 trees x 30 features, horizons
1/5/20, ``explain=False`` so the transport's share is visible) and are measured in interleaved
rounds (A B C D, A B C D, ...) so drift in the machine's load hits every variant alike. The
bare server runs the same :class:`serving.auth.Gate` as the Serve ingress; the Serve path adds
its own fixed costs on top (bench/serving_quick.py). The load average is recorded with the
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
    a = p.parse_args(argv)
    load_before = os.getloadavg()
    t0 = time.time()
    res = {
        "bench": "serving_auth",
        "server": "bare grpcio (serving.grpc_server), one process; client: one thread, "
                  "sequential unary Predict, explain=False, 3 horizons",
        "variants": run(a.calls, a.rounds),
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
