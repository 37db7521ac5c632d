"""Monitor job: `python -m ray_apps.monitor` / `stockray monitor` (the daily schedule runs it
after the features job, through `stockray submit`).

The pass itself is `training.lifecycle.monitor.run_monitor`; this module hands it the served
forecasts from the audit log (`serving.outcomes`) and a retrain submitted through the Ray Jobs
API.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from features.settings import Settings
from training.lifecycle.monitor import MonitorJobConfig, run_monitor
from training.monitor import MonitorRules

__all__ = ["MonitorJobConfig", "main", "submit_retrain"]


def submit_retrain(settings: Settings, cfg: MonitorJobConfig,
                   extra: tuple[str, ...] = ()) -> str:
    """Submit `stockray retrain` (``extra`` args first, e.g. ``--after-decay``) to the running
    cluster through the Ray Jobs API."""
    import os

    from ray.job_submission import JobSubmissionClient

    from ray_apps.cluster import auth_env

    token = settings.ray_dir / "auth_token"
    if token.exists():  # the cluster stockray started uses its own token file
        os.environ.update(auth_env(settings))
    url = cfg.dashboard_url or f"http://127.0.0.1:{settings.dashboard_port}"
    entry = shlex.join([sys.executable, "-m", "ray_apps.cli", "--data-dir",
                        str(settings.data_dir), cfg.retrain_command, *extra,
                        *cfg.retrain_args])
    from tenacity import Retrying, retry_if_exception_message, stop_after_delay, wait_fixed

    # a cluster that just started has no job agent for a while (minutes on a loaded node)
    for attempt in Retrying(stop=stop_after_delay(240), wait=wait_fixed(1), reraise=True,
                            retry=retry_if_exception_message(match=".*No available agent.*")):
        with attempt:
            return JobSubmissionClient(url).submit_job(entrypoint=entry)
    raise AssertionError("unreachable")


def main(cfg: MonitorJobConfig, settings: Settings, log=print) -> dict:
    """One monitoring pass; returns {"decisions", "report", "submitted"}."""
    from serving.outcomes import served_predictions

    settings = settings.resolved()
    return run_monitor(cfg, settings, served=served_predictions(settings.data_dir / "audit"),
                       submit_retrain=lambda extra: submit_retrain(settings, cfg, extra),
                       log=log)


def _parse(argv=None) -> MonitorJobConfig:
    p = argparse.ArgumentParser(prog="python -m ray_apps.monitor", description=__doc__)
    p.add_argument("--act", action="store_true", help="carry out rollback/retrain/promotion")
    p.add_argument("--window-dates", type=int, default=60)
    p.add_argument("--min-dates", type=int, default=20)
    p.add_argument("--dashboard-url", default=None)
    p.add_argument("--config", type=Path, default=None, help="experiment config (lifecycle)")
    a = p.parse_args(argv)
    return MonitorJobConfig(rules=MonitorRules(window_dates=a.window_dates,
                                               min_dates=a.min_dates),
                            act=a.act, dashboard_url=a.dashboard_url, config_path=a.config)


if __name__ == "__main__":
    main(_parse(), Settings())
