"""A real writer process for the SIGKILL tests: loops one store's real write path forever.

``python -m tests.crash_writer STORE ROOT [--setup]``: ``--setup`` builds the store's starting
state and exits; otherwise it prints ``READY`` and then ``DONE <i>`` after every completed
write until it is killed. Every round continues from what is on disk, so a killed round is
followed by one that builds on whatever the kill left behind.

Stores and the real code they drive:
  ingest       features.ingest.ingest of a CSV (FileSource): lake partitions + quarantine
  features     features.store.write_offline: features/labels tables and the year panel
  features_stream  features.stream.build_offline (what `stockray features` runs) on a lake
               that grows one session per round
  materialize  features.store.materialize: Feast (sqlite online store) + online generation
  export       training.export.export_bundle + write_bundle_meta: an ONNX bundle directory
  promote      training.registry.promote (forced) on a sqlite MLflow registry + local bundle
  state        features.durable.atomic_write_json with mode 0600 (auth/alert/retrain state)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

TICKERS = ("AAA", "BBB", "CCC")
DAYS = pd.bdate_range("2020-01-01", periods=4000, tz="UTC")
MODEL = "stockray-lgbm-h5"


def expected_close(ticker: str, day: int) -> float:
    return 100.0 + day + TICKERS.index(ticker) * 1000.0


# --- ingest -------------------------------------------------------------------------------------

def ingest_round(root: Path, i: int) -> None:
    from features.ingest import ingest
    from features.lake import read_bars
    from features.sources import FileSource

    bars_dir, quarantine = root / "lake" / "bars", root / "lake" / "quarantine"
    try:  # the shortest partition: a kill may land between two partitions' writes
        have = min(read_bars(bars_dir, [t]).shape[0] for t in TICKERS)
    except FileNotFoundError:
        have = 0
    rows = []
    for t in TICKERS:
        for d in range(max(0, have - 3), have + 5):  # overlaps what is stored: an upsert
            c = expected_close(t, d)
            rows.append({"ticker": t, "date": DAYS[d].strftime("%Y-%m-%d"), "open": c,
                         "high": c + 1, "low": c - 1, "close": c, "volume": 1000})
    rows.append({"ticker": "AAA", "date": "not-a-date", "open": 1, "high": 1, "low": 1,
                 "close": 1, "volume": 1})  # one bad row per round goes to the quarantine
    src = root / f"in-{i}.csv"
    pd.DataFrame(rows).to_csv(src, index=False)
    ingest([FileSource(src)], bars_dir, quarantine, run_id=f"r{i}")
    src.unlink()


# --- features (offline tables) ------------------------------------------------------------------

def offline_rows(gen: int) -> int:
    return 40 + 10 * (gen % 5)


def offline_frame(gen: int) -> pd.DataFrame:
    from features.pipeline import ALL_LABEL_COLUMNS, FEATURE_NAMES

    n = offline_rows(gen)
    ts = DAYS[np.arange(n) % 400]
    frame = pd.DataFrame({"ticker": [TICKERS[k % 3] for k in range(n)], "ts": ts})
    frame = frame.drop_duplicates(["ticker", "ts"])
    vals = {c: np.full(len(frame), float(gen)) for c in [*FEATURE_NAMES, *ALL_LABEL_COLUMNS]}
    return pd.concat([frame.reset_index(drop=True), pd.DataFrame(vals)], axis=1).assign(
        feature_ts=frame["ts"].to_numpy())


def offline_gen(offline: Path) -> int:
    from features.lake import read_table_once
    from features.pipeline import FEATURE_NAMES

    p = offline / "features.parquet"
    if not p.exists():
        return -1
    return int(read_table_once(p, columns=[FEATURE_NAMES[0]]).column(0)[0].as_py())


def features_round(root: Path, i: int) -> None:
    from features.store import write_offline

    offline = root / "offline"
    write_offline(offline_frame(offline_gen(offline) + 1), offline)


# --- features_stream (the `stockray features` path: lake -> parts -> DuckDB ranks -> tables) --

STREAM_DAYS = 300


def _stream_bars(n: int) -> pd.DataFrame:
    from tests.unit.test_pipeline import synthetic_bars

    return pd.concat([synthetic_bars(t, n=n, seed=k, start="2010-01-01")
                      for k, t in enumerate(TICKERS)])


def stream_setup(root: Path) -> None:
    from features.lake import write_bars

    write_bars(_stream_bars(STREAM_DAYS), root / "lake" / "bars")


def stream_round(root: Path, i: int) -> None:
    from features.lake import read_bars, write_bars
    from features.stream import build_offline

    bars_dir = root / "lake" / "bars"
    # One more session per round, so each generation of the tables has its own row count.
    n = min(read_bars(bars_dir, [t]).shape[0] for t in TICKERS) + 1
    write_bars(_stream_bars(n).groupby("ticker").tail(1), bars_dir)
    build_offline(bars_dir, root / "offline", root / "work", engine="local", macro=None,
                  run_id=f"s{i}", derive_index=False)


# --- materialize --------------------------------------------------------------------------------

def materialize_setup(root: Path) -> None:
    from features.pipeline import build_features_local
    from features.sources import MARKET_TICKER
    from features.store import apply_repo, write_offline
    from tests.unit.test_pipeline import synthetic_bars

    bars = pd.concat([synthetic_bars(t, n=80, seed=k, start="2010-01-01")
                      for k, t in enumerate([*TICKERS, MARKET_TICKER])])
    frame = build_features_local(bars)
    write_offline(frame, root / "offline")
    frame.to_parquet(root / "frame.parquet")
    apply_repo(root, root / "offline")


def materialize_round(root: Path, i: int, _cache: dict = {}) -> None:  # noqa: B006 - per process
    from features.store import materialize, open_store

    if not _cache:
        _cache["store"] = open_store(root)
        _cache["frame"] = pd.read_parquet(root / "frame.parquet")
    materialize(_cache["store"], _cache["frame"])


# --- export ---------------------------------------------------------------------------------------

def _booster():
    import lightgbm as lgb

    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 6))
    y = x[:, 0] + 0.1 * rng.normal(size=300)
    return lgb.train({"objective": "regression", "verbose": -1, "num_leaves": 7},
                     lgb.Dataset(x, y), num_boost_round=8)


def export_round(root: Path, i: int, _cache: dict = {}) -> None:  # noqa: B006 - per process
    from training.export import export_bundle, read_bundle_meta, write_bundle_meta

    out = root / "bundle"
    if not _cache:
        _cache["booster"] = _booster()
        # continue the version count from what is on disk (a kill must never move it back)
        prev = (str(read_bundle_meta(out)["model_version"]).removesuffix("-meta")
                if (out / "bundle.json").exists() else "-1")
        _cache["base"] = int(prev) + 1
    v = _cache["base"] + i
    export_bundle(_cache["booster"], [f"f{k}" for k in range(6)], out, model_name=MODEL,
                  model_version=str(v), horizon=5, parity_rows=64)
    write_bundle_meta(out, model_version=f"{v}-meta")


# --- promote ----------------------------------------------------------------------------------------

def promote_setup(root: Path) -> None:
    from features.pipeline import FEATURE_NAMES
    from tests.training_fixtures import planted_frame
    from training.lgbm import LgbmParams, fit_horizon
    from training.registry import ensure_experiment, register_horizon

    uri = f"sqlite:///{root / 'mlflow' / 'mlflow.db'}"
    (root / "mlflow").mkdir(parents=True, exist_ok=True)
    exp = ensure_experiment(uri, (root / "mlflow" / "artifacts").as_uri(), "crash")
    result = fit_horizon(planted_frame(n_tickers=6, n_days=200), FEATURE_NAMES, 5,
                         LgbmParams(num_boost_round=5))
    for _ in range(3):
        register_horizon(result, tracking_uri=uri, experiment_id=exp,
                         bundle_root=root / "models", params={"num_boost_round": 5})


def promote_round(root: Path, i: int) -> None:
    import mlflow

    from training.registry import promote

    uri = f"sqlite:///{root / 'mlflow' / 'mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri=uri)
    champ = str(client.get_model_version_by_alias(MODEL, "champion").version)
    if not client.get_registered_model(MODEL).aliases.get("challenger"):
        nxt = {"1": "2", "2": "3", "3": "1"}[champ]
        client.set_registered_model_alias(MODEL, "challenger", nxt)
    promote(uri, MODEL, margin=0.0, min_seeds=1, force=True, bundle_root=root / "models")


# --- state files ------------------------------------------------------------------------------------

def state_round(root: Path, i: int) -> None:
    from features.durable import atomic_write_json

    p = root / "state" / "state.json"
    prev = json.loads(p.read_text())["i"] if p.exists() else -1
    atomic_write_json(p, {"i": prev + 1, "pad": "x" * 200_000}, mode=0o600)


ROUNDS = {"ingest": ingest_round, "features": features_round, "materialize": materialize_round,
          "export": export_round, "promote": promote_round, "state": state_round,
          "features_stream": stream_round}
SETUPS = {"materialize": materialize_setup, "promote": promote_setup,
          "features_stream": stream_setup}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("store", choices=sorted(ROUNDS))
    ap.add_argument("root", type=Path)
    ap.add_argument("--setup", action="store_true")
    a = ap.parse_args(argv)
    a.root.mkdir(parents=True, exist_ok=True)
    if a.setup:
        if a.store in SETUPS:
            SETUPS[a.store](a.root)
        return 0
    round_ = ROUNDS[a.store]
    round_(a.root, 0)  # warm imports and caches before READY, so kills land in writes
    print("READY", flush=True)
    i = 1
    while True:
        round_(a.root, i)
        print(f"DONE {i}", flush=True)
        i += 1


if __name__ == "__main__":
    sys.exit(main())
