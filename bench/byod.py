"""Bring-your-own-universe benchmark: a user's CSV -> first served prediction.

Run: ``python -m bench.byod --out bench/results/byod.json`` (a few minutes on 2 cores;
``--tickers``/``--days`` to change the universe).

Writes a synthetic universe (default 500 tickers x 252 business days, seeded, no index series,
Yahoo-style column names) to a CSV in a fresh temporary data dir, then runs what
``stockray up --file universe.csv --once`` runs (``ray_apps.up.main``): Ray start, ingest and
validation, features (market context derived from the universe), Feast, LightGBM training per
horizon, MLflow registration + ONNX, Ray Serve, and a sample prediction with explanation
through the gRPC client (token auth on). Reported: each stage's seconds, ingest -> first
served prediction (Ray start excluded), the whole command, and one more explained Predict
timed from the client while serving. The machine is shared: timings are noisy, and the 1-min
load average before and after is recorded. Tests never assert these numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import pandas as pd

from features.ports import free_port_pair


def write_csv(path: Path, n_tickers: int, n_days: int, seed: int = 0) -> int:
    """The universe as a user would export it; returns the number of rows."""
    from training.synthetic import make_market

    bars = make_market(n_tickers=n_tickers, n_days=n_days, start="2023-01-02", seed=seed).bars
    pd.DataFrame({"Symbol": bars["ticker"], "Date": bars["ts"].dt.strftime("%Y-%m-%d"),
                  "Open": bars["open"], "High": bars["high"], "Low": bars["low"],
                  "Close": bars["close"], "Adj Close": bars["adj_close"],
                  "Volume": bars["volume"]}).to_csv(path, index=False)
    return len(bars)


def run(n_tickers: int, n_days: int) -> dict:
    from features.settings import Settings
    from ray_apps.up import UpConfig, main
    from serving.client import PredictionClient

    load0 = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="byod") as tmp:
        os.environ.setdefault("STOCKRAY_AUTH_DIR", str(Path(tmp) / "auth"))
        csv = Path(tmp) / "universe.csv"
        t = time.perf_counter()
        rows = write_csv(csv, n_tickers, n_days)
        write_s = time.perf_counter() - t
        extra = {}

        def on_ready(ep):
            with PredictionClient(ep.grpc_target) as client:
                s = time.perf_counter()
                client.predict("SYN001", [1, 5, 20], explain=True)
                extra["explained_predict_ms"] = round((time.perf_counter() - s) * 1e3, 2)

        # a short data dir (Ray socket paths) and free ports: other runs may share the box
        settings = Settings(data_dir=Path(tmp) / "d", grpc_port=free_port_pair(),
                            http_port=free_port_pair(), dashboard_port=free_port_pair())
        res = main(UpConfig(once=True, files=[csv]), settings, on_ready=on_ready)
        t_ = res.timings
        ingest_to_pred = t_["to_first_prediction_s"] - t_["ray_start_s"]
        return {
            "universe": {"tickers": n_tickers, "days": n_days, "csv_rows": rows,
                         "csv_write_s": round(write_s, 2), "index": "none (derived)"},
            "stages_s": {k: round(v, 2) for k, v in t_.items()},
            "ingest_to_first_served_prediction_s": round(ingest_to_pred, 2),
            "command_to_first_served_prediction_s": round(t_["to_first_prediction_s"], 2),
            "servable_tickers": len(res.servable),
            "feature_tickers": len(res.features.tickers),
            "features_dropped": (res.train.features.dropped if res.train.features else {}),
            "market_context": res.features.quality.get("market_context"),
            **extra,
            "load_avg_1m_before": round(load0, 2),
            "load_avg_1m_after": round(os.getloadavg()[0], 2),
        }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tickers", type=int, default=500)
    ap.add_argument("--days", type=int, default=252)
    ap.add_argument("--out", type=Path, default=Path("bench/results/byod.json"))
    a = ap.parse_args()
    out = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
           "result": run(a.tickers, a.days)}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(out, indent=2, default=str))
    print(json.dumps(out, indent=2, default=str))


if __name__ == "__main__":
    main()
