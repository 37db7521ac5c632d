"""The lifecycle loop end to end on a planted market whose signal flips sign half-way.

Replayed day by day, the monitor's rules (defaults: 60-date window, >= 20 realised dates)
judge the served champion's forecasts from the audit log against the realised returns in the
lake; the day the decay first fires, the real monitor job runs on that day's data: it records
the decision and submits the retrain through the Ray Jobs API. Here the submitted job is
`stockray promote` of a challenger trained after the flip (the default-suite variant: the
challenger is pre-trained), so the job promotes it and Serve hot-swaps to it while 4 clients
keep calling Predict: zero failed requests. Detection delay = sessions of data after the flip
until the retrain decision; it is printed and bounded here.
"""

from __future__ import annotations

import time

import pytest

from features.settings import Settings
from ray_apps.monitor import MonitorJobConfig, main
from serving.app import AppArgs
from serving.launch import serve_env, start_serve
from serving.models import ModelSource
from serving.outcomes import served_predictions
from tests.conftest import free_port
from tests.flip_scenario import (
    DEPLOYED,
    FLIP,
    NAME,
    SESSIONS,
    flip_market,
    register,
    write_audit,
    write_lake,
)
from tests.integration.test_load import TICKERS, Load
from tests.ray_fixtures import private_ray, wait_for_job
from tests.serving_fixtures import synthetic_rows
from training.monitor import MonitorRules, realised
from training.monitor_record import DECISION_TAG
from training.monitor_replay import detection_delay, replay_decisions

pytestmark = pytest.mark.integration
RULES = MonitorRules()  # what `stockray monitor` runs with


def _detection(settings: Settings, bars, served) -> tuple[int, int]:
    """Replay the rules over every session; (detection delay, session index it fired)."""
    write_lake(settings, bars, len(SESSIONS) - 1)
    write_audit(settings, served, "1", DEPLOYED, len(SESSIONS) - 1)
    from features.lake import read_bars

    outcomes = realised(served_predictions(settings.data_dir / "audit"),
                        read_bars(settings.bars_dir))
    replay = replay_decisions(outcomes, SESSIONS, RULES, validation_rank_ic=0.20)
    before = replay[replay.k < FLIP]
    assert set(before.action) <= {"wait", "none"} and "none" in set(before.action)
    delay = detection_delay(replay, FLIP)
    assert delay is not None
    return delay, FLIP + delay


def _job_agent_ready(jobs, timeout: float = 300.0) -> None:
    """The head's job agent starts after the dashboard, late on a loaded box: a no-op job
    must have run before the load starts (the monitor's own submission comes under load)."""
    from ray.job_submission import JobStatus

    deadline = time.monotonic() + timeout
    while True:
        try:
            job = jobs.submit_job(entrypoint="true")
            break
        except RuntimeError as e:
            if "No available agent" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(1)
    while jobs.get_job_status(job) not in (JobStatus.SUCCEEDED, JobStatus.FAILED):
        assert time.monotonic() < deadline, "the no-op job did not finish"
        time.sleep(0.5)


def _own_agent_port(monkeypatch) -> None:
    """Ray starts every node's dashboard agent (the Jobs API's backend) on port 52365, and
    `ray.init` has no option for it: on a machine where another cluster runs, this one's
    agent cannot bind and every job submission fails. Give this cluster a free port."""
    from ray._private.parameter import RayParams

    init, port = RayParams.__init__, free_port()

    def with_port(self, *args, **kwargs):
        kwargs.setdefault("dashboard_agent_listen_port", port)
        init(self, *args, **kwargs)

    monkeypatch.setattr(RayParams, "__init__", with_port)


def test_flip_detected_retrain_job_promotes_and_serving_swaps_without_failures(
        tmp_path, monkeypatch):
    import mlflow
    from ray.job_submission import JobStatus, JobSubmissionClient

    _own_agent_port(monkeypatch)

    t0 = time.monotonic()
    bars, served = flip_market()
    delay, fired = _detection(Settings(data_dir=tmp_path / "replay").resolved(), bars, served)
    print(f"\nflip at session {FLIP}: retrain decided {delay} sessions of data later")
    assert 1 <= delay <= 30, delay

    dash, grpc_port = free_port(), free_port()
    settings = Settings(data_dir=tmp_path / "d", dashboard_port=dash).resolved()
    # the data dir as it stood after the close of the session the rule fired on
    write_lake(settings, bars, fired)
    write_audit(settings, served, "1", DEPLOYED, fired)
    uri = register(settings, tmp_path / "reg")
    with private_ray(serve_env(grpc_port), prefix="srf-", dashboard_port=dash):
        args = AppArgs(models=ModelSource(tracking_uri=uri, horizons=[1],
                                          download_dir=str(tmp_path / "dl")),
                       reader="tests.serving_fixtures:FakeReader",
                       reader_kwargs={"rows": synthetic_rows(8)}, warm_tickers=TICKERS,
                       routing={"alias_poll_s": 0.5})
        ep = start_serve(args, grpc_port, free_port(), "127.0.0.1", timeout_s=180)
        t_up = time.monotonic()
        cfg = MonitorJobConfig(rules=RULES, act=True, retrain_command="promote",
                               retrain_args=("--family", "lgbm", "--horizon", "1"))
        jobs = JobSubmissionClient(f"http://127.0.0.1:{dash}")
        _job_agent_ready(jobs)
        with Load(ep.grpc_target, 4) as load:
            time.sleep(2)
            lines: list[str] = []
            out = main(cfg, settings, log=lines.append)
            (d,) = out["decisions"]
            assert d.action == "retrain" and d.version == "1", (d, lines)
            assert "decayed from validation 0.2000" in d.reason
            assert d.figures["live_rank_ic"] < 0.15 and d.figures["n_dates"] >= 20
            job = out["submitted"]
            assert job, lines
            t_submitted = time.monotonic()
            status = wait_for_job(jobs, job, 240, poll_s=0.5)
            logs = jobs.get_job_logs(job)
            assert status == JobStatus.SUCCEEDED, logs
            assert f"{NAME}: challenger v2 PROMOTED" in logs, logs
            t_job = time.monotonic()
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and load.versions.get("2", 0) < 20:
                time.sleep(0.2)
            time.sleep(1)
        print(f"load during the swap: {dict(load.codes)}, versions {dict(load.versions)}; "
              f"cluster + Serve up {t_up - t0:.0f}s, monitor {t_submitted - t_up:.0f}s, "
              f"promote job {t_job - t_submitted:.0f}s, swap seen {time.monotonic() - t_job:.0f}s")
        assert load.failed() == 0, load.errors
        assert load.versions.get("1", 0) > 0 and load.versions.get("2", 0) >= 20
        assert set(load.versions) <= {"1", "2"}

    client = mlflow.MlflowClient(tracking_uri=uri)
    assert str(client.get_model_version_by_alias(NAME, "champion").version) == "2"
    v1 = client.get_model_version(NAME, "1").tags
    assert '"action": "retrain"' in v1[DECISION_TAG]
