"""Pipeline gauges: each step's helper sets the series the dashboards plot, with the tags
`features.telemetry.SERIES` declares; without Ray every helper is a no-op (no Ray import)."""

import subprocess
import sys

import pytest

from features import pipeline_metrics as pm
from features.telemetry import SERIES


@pytest.fixture
def calls(monkeypatch):
    got = []

    def record(name, value, wait=True, **tags):
        assert SERIES[name].kind == "gauge" and set(tags) == set(SERIES[name].tags)
        got.append((name, value, tags, wait))
        return True

    monkeypatch.setattr(pm, "record_pipeline", record)
    return got


def test_each_step_sets_its_gauges(calls):
    assert pm.record_ingest({"file:a.csv": {"rows_ok": 10, "rows_quarantined": 2},
                             "bokeh:AAPL": {"rows_ok": 5, "rows_quarantined": 0}})
    assert pm.record_feature_build(3.5, "local")
    assert pm.record_training(12.0, "lgbmrank")
    assert pm.record_stream_lag(0.02, "ReplaySource")
    assert pm.record_walkforward({"wf_lgbm_reg_rank_ic_mean": 0.04,
                                  "wf_lgbm_reg_rank_ic_std": 0.01,
                                  "wf_reversal_1d_rank_ic_mean": 0.02,
                                  "wf_lgbm_reg_ic_mean": 0.03,
                                  "wf_zero_rank_ic_mean": float("nan")}, 5)
    assert [(n, v, t) for n, v, t, _ in calls] == [
        ("stockray_rows_ingested", 10, {"source": "file:a.csv"}),
        ("stockray_rows_quarantined", 2, {"source": "file:a.csv"}),
        ("stockray_rows_ingested", 5, {"source": "bokeh:AAPL"}),
        ("stockray_rows_quarantined", 0, {"source": "bokeh:AAPL"}),
        ("stockray_feature_build_s", 3.5, {"engine": "local"}),
        ("stockray_training_s", 12.0, {"family": "lgbmrank"}),
        ("stockray_stream_lag_s", 0.02, {"source": "ReplaySource"}),
        ("stockray_walkforward_rank_ic", 0.04, {"model": "lgbm_reg", "horizon": "5"}),
        ("stockray_walkforward_rank_ic", 0.02, {"model": "reversal_1d", "horizon": "5"}),
    ]
    # the stream never waits on the metrics actor; the batch jobs do (their figures land)
    assert [w for n, *_, w in calls if n == "stockray_stream_lag_s"] == [False]


def test_null_without_ray_and_no_ray_import():
    code = ("import sys; from features import pipeline_metrics as pm; "
            "assert not pm.record_ingest({'f': {'rows_ok': 3, 'rows_quarantined': 1}}); "
            "assert not pm.record_walkforward({'wf_lgbm_reg_rank_ic_mean': 0.1}, 5); "
            "assert not pm.record_stream_lag(0.1, 'x'); "
            "assert not pm.record_training(1.0, 'lgbm'); "
            "import features.live; "
            "assert 'ray' not in sys.modules, 'features imported Ray'")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=False)
    assert out.returncode == 0, out.stderr
