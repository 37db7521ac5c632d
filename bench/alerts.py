"""Alert delivery latency and retry behaviour against local receivers (JSON out).

Per sink kind (signed webhook, Twilio-format SMS, SMTP email via aiosmtpd): the time from
`Dispatcher.deliver` to the receiver's acknowledgement, p50/p99 over ``--n`` alerts, healthy
receivers; then a webhook receiver that answers 503 to every other request, so each alert
needs one retry (jittered backoff, base ``--backoff`` seconds): attempts per alert and the
latency the retry adds.

    python -m bench.alerts --out data/bench/alerts.json
"""

from __future__ import annotations

import argparse
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from tempfile import TemporaryDirectory

import numpy as np

from bench import emit
from serving.alerts.rules import AlertConfig, PredictionObservation, prediction_alerts
from serving.alerts.sinks import Dispatcher


def _receiver(fail_every: int = 0):
    state = {"n": 0}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            state["n"] += 1
            status = 503 if fail_every and state["n"] % fail_every == 1 else 200
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args):
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, f"http://127.0.0.1:{srv.server_address[1]}"


def _alerts(n: int):
    rules = AlertConfig.model_validate({"rules": [
        {"name": "move", "kind": "prediction", "when": "move", "threshold": 0.0}]}).rules
    obs = [PredictionObservation(f"T{i:04d}", 5, 0.01, "2026-12-04") for i in range(n)]
    return prediction_alerts(rules, obs)[0]


def _timed(d: Dispatcher, alerts) -> tuple[list[float], int]:
    lat, attempts = [], 0
    for a in alerts:
        t0 = time.perf_counter()
        rep = next(iter(d.deliver([a]).values()))
        lat.append((time.perf_counter() - t0) * 1e3)
        attempts += rep.attempts
        assert rep.delivered == 1, rep.errors
    return lat, attempts


def _stats(lat: list[float], attempts: int, n: int) -> dict:
    return {"n": n, "p50_ms": float(np.percentile(lat, 50)), "p99_ms":
            float(np.percentile(lat, 99)), "attempts_per_alert": attempts / n}


def run(n: int, backoff: float) -> dict:
    from aiosmtpd.controller import Controller

    from tests.conftest import free_port

    os.environ["BENCH_HOOK_SECRET"] = "bench-secret"
    os.environ["BENCH_SID"], os.environ["BENCH_TOKEN"] = "AC00", "tok"
    alerts = _alerts(n)
    out: dict = {"load_avg_1m": os.getloadavg()[0], "backoff_s": backoff}
    with TemporaryDirectory() as tmp:
        srv, url = _receiver()
        sinks = {"webhook": {"type": "webhook", "url": url, "secret_env": "BENCH_HOOK_SECRET"},
                 "sms": {"type": "sms", "base_url": url, "account_sid_env": "BENCH_SID",
                         "auth_token_env": "BENCH_TOKEN", "sender": "+1555", "to": ["+1556"]}}

        class Inbox:
            async def handle_DATA(self, server, session, envelope):
                return "250 OK"

        port = free_port()
        ctl = Controller(Inbox(), hostname="127.0.0.1", port=port)
        ctl.start()
        sinks["email"] = {"type": "email", "host": "127.0.0.1", "port": port,
                          "sender": "a@b.c", "to": ["d@e.f"]}
        try:
            for kind, spec in sinks.items():
                cfg = AlertConfig.model_validate({"rules": [], "sinks": [
                    {"name": kind, **spec}]})
                out[kind] = _stats(*_timed(Dispatcher(cfg, tmp), alerts), n)
        finally:
            ctl.stop()
            srv.shutdown()
        flaky, url = _receiver(fail_every=2)
        cfg = AlertConfig.model_validate({"rules": [], "sinks": [
            {"name": "flaky", "type": "webhook", "url": url, "secret_env": "BENCH_HOOK_SECRET"}]})
        out["webhook_one_retry"] = _stats(*_timed(Dispatcher(cfg, tmp, backoff_s=backoff),
                                                  alerts), n)
        flaky.shutdown()
    out["retry_cost_ms_p50"] = out["webhook_one_retry"]["p50_ms"] - out["webhook"]["p50_ms"]
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--backoff", type=float, default=0.5)
    p.add_argument("--out", type=Path, default=None)
    a = p.parse_args()
    emit(run(a.n, a.backoff), a.out)


if __name__ == "__main__":
    main()
