"""The planted flip market of the lifecycle tests, written into a data dir the way the
pipeline would have left it: a lake of bars, a served champion's forecasts in the audit log,
an MLflow registry with the champion (trained before the flip) and a challenger.

The market (`tests.unit.test_monitor._market`): 12 tickers, 160 sessions; the served
forecast is the planted signal, and from session `FLIP` on the market does the opposite of
the signal (a sign flip). The champion serves from session `DEPLOYED` on.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from features.lake import write_bars
from features.settings import Settings
from serving.audit import AuditLog
from tests.serving_fixtures import make_bundles
from tests.unit.test_monitor import DAYS, _market

NAME = "stockray-lgbm-h1"
FLIP = 80
DEPLOYED = 20
SESSIONS = DAYS.tz_localize(None).normalize()


def flip_market():
    """(bars, served forecasts) of the planted market flipping at `FLIP`."""
    return _market(flip_at=FLIP)


def write_lake(settings: Settings, bars: pd.DataFrame, through: int) -> None:
    """The lake as of the close of session ``through`` (a daily fetch appends a session)."""
    b = bars[bars.ts <= DAYS[through]]
    write_bars(b.assign(open=b.close, high=b.close * 1.01, low=b.close * 0.99, volume=1e6,
                        source="planted", ingested_at=pd.Timestamp.now(tz="UTC")),
               settings.bars_dir)


def write_audit(settings: Settings, served: pd.DataFrame, version: str, first: int,
                through: int) -> int:
    """What the service logged answering Predict for sessions ``first..through`` (same
    record shape as `serving.service`), with ``version`` as the champion."""
    s = served[(served.feature_ts >= DAYS[first]) & (served.feature_ts <= DAYS[through])]
    log_served(settings, s, f"champion:{NAME}:{version}")
    return len(s)


def log_served(settings: Settings, served: pd.DataFrame, model: str) -> None:
    """Append one Predict audit record per row of ``served`` (``model`` as the answering model
    label), as the service writes them."""
    log = AuditLog(settings.data_dir / "audit", fsync_every_s=0)
    for r in served.itertuples():
        ts = r.request_ts.timestamp()
        log.append({"ts": ts, "request_id": f"replay-{r.Index}", "rpc": "Predict",
                    "request": {"ticker": r.ticker, "horizons": [1]},
                    "rows": [{"ticker": r.ticker, "h": {"1": {
                        "pred": r.pred, "model": model, "stale": False,
                        "age": ts - r.feature_ts.timestamp(), "lo": r.lo, "hi": r.hi}}}],
                    "latency_ms": 1.0})
    log.close()


def register(settings: Settings, work: Path) -> str:
    """v1 champion (validation RankIC 0.20, walk-forward RankIC ~0.15 over 3 seeds) and v2,
    a challenger trained after the flip (walk-forward ~0.20): the registry's promotion rule
    (margin 0.005 over >= 3 seeds) holds for v2. Returns the tracking URI."""
    import mlflow

    from training.registry import HISTORY_TAG, WF_SEEDS_TAG

    settings.mlflow_dir.mkdir(parents=True, exist_ok=True)
    uri = settings.tracking_uri
    client = mlflow.MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("flip", artifact_location=(work / "art").as_uri())
    client.create_registered_model(NAME)
    for v, val_ic, seeds in ((1, 0.20, [0.15, 0.16, 0.14]), (2, 0.21, [0.20, 0.21, 0.19])):
        run = client.create_run(exp)
        client.log_metric(run.info.run_id, "val_rank_ic", val_ic)
        bundle = make_bundles(work / f"v{v}", horizons=(1,), version=str(v), seed=v)[1]
        client.log_artifacts(run.info.run_id, bundle, artifact_path="bundle")
        client.set_terminated(run.info.run_id)
        client.create_model_version(NAME, source=f"runs:/{run.info.run_id}/bundle",
                                    run_id=run.info.run_id)
        client.set_model_version_tag(NAME, str(v), WF_SEEDS_TAG, json.dumps(seeds))
    client.set_registered_model_alias(NAME, "champion", "1")
    client.set_registered_model_alias(NAME, "challenger", "2")
    client.set_registered_model_tag(NAME, HISTORY_TAG, json.dumps(["1"]))
    return uri
