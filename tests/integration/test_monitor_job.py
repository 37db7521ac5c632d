"""The monitor job on real stores: an MLflow registry whose champion went bad after the market
flipped, served forecasts in the audit log, bars in the lake, features in the offline store.
The job records its decision on the version and rolls back to the previous champion; a retrain
is submitted through the real Ray Jobs API."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from features.lake import write_bars
from features.settings import Settings
from ray_apps.monitor import MonitorJobConfig, main, submit_retrain
from serving.audit import AuditLog
from tests.conftest import free_port
from tests.serving_fixtures import make_bundles
from tests.unit.test_monitor import DAYS, _market
from training.monitor import MonitorRules
from training.monitor_record import DECISION_TAG, LIVE_IC_TAG

NAME = "stockray-lgbm-h1"


def _registry(settings: Settings) -> None:
    import mlflow

    settings.mlflow_dir.mkdir(parents=True, exist_ok=True)
    client = mlflow.MlflowClient(tracking_uri=settings.tracking_uri)
    exp = client.create_experiment("t", artifact_location=str(settings.data_dir / "art"))
    client.create_registered_model(NAME)
    for v, val_ic in ((1, 0.18), (2, 0.20)):
        run = client.create_run(exp)
        client.log_metric(run.info.run_id, "val_rank_ic", val_ic)
        bundle = make_bundles(settings.data_dir / f"b{v}", horizons=(1,), version=str(v))[1]
        client.log_artifacts(run.info.run_id, bundle, "bundle")
        client.create_model_version(NAME, source=str(settings.data_dir), run_id=run.info.run_id)
    client.set_model_version_tag(NAME, "1", LIVE_IC_TAG, "0.150000")
    client.set_registered_model_tag(NAME, "champion_history", json.dumps(["1", "2"]))
    client.set_registered_model_alias(NAME, "champion", "2")


def _audit(settings: Settings, served: pd.DataFrame) -> None:
    log = AuditLog(settings.data_dir / "audit", fsync_every_s=0)
    for r in served.itertuples():
        ts = r.request_ts.timestamp()
        log.append({"ts": ts, "request_id": "x", "rpc": "Predict", "request": {},
                    "rows": [{"ticker": r.ticker, "h": {"1": {
                        "pred": r.pred, "model": f"champion:{NAME}:2", "stale": False,
                        "age": ts - r.feature_ts.timestamp(), "lo": r.lo, "hi": r.hi}}}],
                    "latency_ms": 1.0})
    log.close()


def test_monitor_rolls_back_a_champion_that_went_bad(tmp_path):
    import mlflow

    settings = Settings(data_dir=tmp_path / "d").resolved()
    bars, served = _market(flip_at=40)
    n = len(bars)
    write_bars(bars.assign(open=bars.close, high=bars.close * 1.01, low=bars.close * 0.99,
                           volume=1e6, source="test", ingested_at=pd.Timestamp.now(tz="UTC"))
               .iloc[:n], settings.bars_dir)
    settings.offline_dir.mkdir(parents=True)
    rng = np.random.default_rng(0)
    pd.DataFrame({"ticker": bars.ticker, "ts": bars.ts,
                  "f_stable": rng.normal(0, 1, n),
                  "f_shift": rng.normal(0, 1, n) + (bars.ts >= DAYS[100]) * 2.0}
                 ).to_parquet(settings.offline_dir / "features.parquet")
    _registry(settings)
    # the champion (v2) was served after the flip only
    _audit(settings, served[served.feature_ts >= DAYS[60]])
    lines: list[str] = []
    out = main(MonitorJobConfig(rules=MonitorRules(window_dates=60, min_dates=20), act=True),
               settings, log=lines.append)
    (d,) = out["decisions"]
    assert d.action == "rollback" and d.version == "2" and "0.1500" in d.reason
    assert d.figures["live_rank_ic"] < 0 and d.figures["validation_rank_ic"] == 0.2
    client = mlflow.MlflowClient(tracking_uri=settings.tracking_uri)
    assert str(client.get_model_version_by_alias(NAME, "champion").version) == "1"
    tags = client.get_model_version(NAME, "2").tags
    assert json.loads(tags[DECISION_TAG])["action"] == "rollback"
    assert float(tags[LIVE_IC_TAG]) == pytest.approx(d.figures["live_rank_ic"], abs=1e-6)
    assert any("rolled back v2 -> v1" in x for x in lines)
    served_meta = json.loads((settings.models_dir / "h1" / "bundle.json").read_text())
    assert served_meta["model_version"] == "1"  # the served bundle follows the rollback
    report = json.loads(out["report"]["json"].read_text())
    assert report["drift"][0]["feature"] == "f_shift" and report["drift"][0]["shifted"]
    page = out["report"]["html"].read_text()
    assert "fig-live_ic" in page and "fig-drift" in page and "fig-regime" in page


@pytest.mark.integration
def test_retrain_is_submitted_through_the_ray_jobs_api(tmp_path, monkeypatch):
    from ray.job_submission import JobStatus, JobSubmissionClient

    from tests.integration.test_flip_replay import _own_agent_port
    from tests.ray_fixtures import private_ray, wait_for_job

    _own_agent_port(monkeypatch)  # another cluster on the box holds the default agent port
    dash = free_port()
    with private_ray(prefix="srm-", dashboard_port=dash):
        settings = Settings(data_dir=tmp_path / "d", dashboard_port=dash).resolved()
        cfg = MonitorJobConfig(retrain_args=("--help",))
        job = submit_retrain(settings, cfg)
        client = JobSubmissionClient(f"http://127.0.0.1:{dash}")
        status = wait_for_job(client, job, 120)
        logs = client.get_job_logs(job)
        assert status == JobStatus.SUCCEEDED, logs
        assert "retrain" in logs and "Usage" in logs  # `stockray retrain --help` ran as a job


@pytest.mark.integration
def test_decay_submits_the_after_decay_retrain_through_the_ray_jobs_api(tmp_path, monkeypatch):
    """The champion's live RankIC decayed (the market flipped): the monitor submits
    `stockray retrain --after-decay --config <the rules' config>` as a real Ray job (here with
    ``--help`` appended, so the job only proves the command line parses in the job)."""
    from ray.job_submission import JobStatus, JobSubmissionClient

    from tests.flip_scenario import (
        DEPLOYED,
        SESSIONS,
        flip_market,
        register,
        write_audit,
        write_lake,
    )
    from tests.integration.test_flip_replay import _own_agent_port
    from tests.ray_fixtures import private_ray, wait_for_job
    from training.config import DEFAULT_CONFIG

    _own_agent_port(monkeypatch)
    dash = free_port()
    settings = Settings(data_dir=tmp_path / "d", dashboard_port=dash).resolved()
    bars, served = flip_market()
    write_lake(settings, bars, len(SESSIONS) - 1)
    write_audit(settings, served, "1", DEPLOYED, len(SESSIONS) - 1)
    register(settings, tmp_path / "reg")
    cfg = MonitorJobConfig(act=True, config_path=DEFAULT_CONFIG, retrain_args=("--help",))
    with private_ray(prefix="srd-", dashboard_port=dash):
        lines: list[str] = []
        out = main(cfg, settings, log=lines.append)
        (d,) = out["decisions"]
        assert d.action == "retrain" and "decayed from validation" in d.reason, lines
        job = out["submitted"]
        assert job and any("retrain --after-decay --config" in x for x in lines), lines
        client = JobSubmissionClient(f"http://127.0.0.1:{dash}")
        status = wait_for_job(client, job, 180)
        info, logs = client.get_job_info(job), client.get_job_logs(job)
    assert status == JobStatus.SUCCEEDED, logs
    assert f"retrain --after-decay --config {DEFAULT_CONFIG} --help" in info.entrypoint
    assert "--after-decay" in logs and "recent window" in logs  # the option's help text
    # a drift-only retrain, or one the monitor is told to run plainly, gets no --after-decay
    from training.lifecycle.monitor import retrain_job_args

    assert retrain_job_args(MonitorJobConfig(after_decay=False), d) == ()
    assert retrain_job_args(MonitorJobConfig(retrain_command="promote"), d) == ()
    drift = type(d)(**{**d.to_dict(), "figures": {**d.figures, "live_rank_ic": 0.19}})
    assert retrain_job_args(MonitorJobConfig(), drift) == ()
