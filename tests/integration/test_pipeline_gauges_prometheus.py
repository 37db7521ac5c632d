"""Pipeline metrics recorded by the real steps reach a real Prometheus: `stockray retrain`'s
ingest, features, training (per family) and walk-forward evaluation on a tiny embedded
universe, then a minute stream, on a private Ray scraped through `cluster/prometheus.yml`.
Every gauge the dashboards plot for the pipeline is read back through the HTTP API, with the
values the steps themselves reported (slow: a whole retrain)."""

from __future__ import annotations

import asyncio
import json

import pytest
import yaml

from features.bar_sources import ReplaySource
from features.live import StreamConfig, StreamRunner
from ray_apps.retrain import RetrainConfig, main
from tests.conftest import free_port
from tests.integration.test_stream_serve import _minute_bars
from tests.prometheus_fixtures import PROMETHEUS, prometheus, wait_for
from tests.ray_fixtures import private_ray
from training.config import DEFAULT_CONFIG

pytestmark = [pytest.mark.integration, pytest.mark.slow,
              pytest.mark.skipif(PROMETHEUS is None, reason="make sysdeps installs prometheus")]


def _value(rows: list[dict]) -> float:
    (row,) = rows
    return float(row["value"][1])


def test_pipeline_steps_record_their_gauges(settings, tmp_path, monkeypatch):
    monkeypatch.setattr("training.registry.git_revision", lambda: "test-revision")
    raw = yaml.safe_load(DEFAULT_CONFIG.read_text())
    raw["walkforward"].update(train_days=250, valid_days=60, test_days=60, max_folds=1,
                              seeds=[0])
    raw["params"].update(num_boost_round=20)
    raw["tune"]["num_samples"] = 0
    small = tmp_path / "lgbm-small.yaml"
    small.write_text(yaml.safe_dump(raw))
    env = {"RAY_metrics_report_interval_ms": "1000"}
    with private_ray(env, prefix="srpm-", dashboard_port=free_port()), \
            prometheus(tmp_path) as base:
        res = main(RetrainConfig(config_path=small, tickers=("AAPL", "IBM", "MSFT"),
                                 start="2009-01-01", end="2012-12-31"), settings,
                   log=lambda s: None)
        state = json.loads(res.state_file.read_text())["steps"]
        runner = StreamRunner(settings.data_dir, StreamConfig(daily_every_min=0, macro=None))
        asyncio.run(runner.run(ReplaySource(_minute_bars().iloc[:30])))

        def total(rows):
            return sum(float(r["value"][1]) for r in rows)

        ok, bad = res.outputs["ingest"]["rows_ok"], res.outputs["ingest"]["rows_quarantined"]
        ingested = wait_for(base, "ray_stockray_rows_ingested", lambda r: total(r) == ok)
        assert ok > 0 and {r["metric"]["source"] for r in ingested} == \
            {"arch", "bokeh-sampledata"}  # the embedded universe's two sources
        wait_for(base, "ray_stockray_rows_quarantined", lambda r: total(r) == bad)
        build = _value(wait_for(base, 'ray_stockray_feature_build_s{engine="local"}'))
        assert 0 < build <= state["features"]["seconds"] + 0.1
        for family in ("lgbm", "lgbmrank"):
            t = _value(wait_for(base, f'ray_stockray_training_s{{family="{family}"}}'))
            assert 0 < t <= state["train"]["seconds"] + 0.1
        import mlflow

        run = mlflow.MlflowClient(settings.tracking_uri).get_run(
            res.outputs["evaluate"]["5"]["mlflow_run"])
        ric = _value(wait_for(base, 'ray_stockray_walkforward_rank_ic'
                                    '{model="lgbm_reg",horizon="5"}'))
        assert ric == pytest.approx(run.data.metrics["wf_lgbm_reg_rank_ic_mean"], abs=1e-9)
        wait_for(base, 'ray_stockray_walkforward_rank_ic{model="momentum",horizon="5"}')
        lag = _value(wait_for(base, 'ray_stockray_stream_lag_s{source="ReplaySource"}'))
        assert 0 < lag < 30
