"""Monitor job: `python -m ray_apps.monitor` / `stockray monitor` (the daily schedule runs it
after the features job, through `stockray submit`).

Reads the served forecasts from the audit log, their realised outcomes from the lake, the
feature drift from the offline store and the market regime; decides per served champion by
the rules of `training.monitor`; records every decision on the version (MLflow tags) and in
``<data_dir>/reports/monitor/<time>/``; with ``--act`` carries them out: a rollback through the
registry (Serve hot-swaps to the new champion), a retrain submitted through the Ray Jobs API,
and the registry's promotion rule for any challenger (left to the job when a retrain was
submitted: its last step promotes).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime

from features.settings import Settings
from training.monitor import MonitorRules


@dataclass
class MonitorJobConfig:
    """What the monitor job does."""

    rules: MonitorRules = field(default_factory=MonitorRules)
    act: bool = False                  # carry out rollback / retrain / promotion
    retrain_args: tuple[str, ...] = ()  # extra `stockray retrain` arguments
    # The command a retrain decision submits: `stockray retrain` (ingest ... promote). A
    # deployment that trains challengers elsewhere submits `promote` (the registry's rule).
    retrain_command: str = "retrain"
    dashboard_url: str | None = None    # Ray Jobs API; default http://127.0.0.1:<dashboard port>
    promotion_margin: float = 0.005
    promotion_min_seeds: int = 3


def submit_retrain(settings: Settings, cfg: MonitorJobConfig) -> str:
    """Submit `stockray retrain` to the running cluster through the Ray Jobs API."""
    import os

    from ray.job_submission import JobSubmissionClient

    from ray_apps.cluster import auth_env

    token = settings.ray_dir / "auth_token"
    if token.exists():  # the cluster stockray started uses its own token file
        os.environ.update(auth_env(settings))
    url = cfg.dashboard_url or f"http://127.0.0.1:{settings.dashboard_port}"
    entry = shlex.join([sys.executable, "-m", "ray_apps.cli", "--data-dir",
                        str(settings.data_dir), cfg.retrain_command, *cfg.retrain_args])
    from tenacity import Retrying, retry_if_exception_message, stop_after_delay, wait_fixed

    # a cluster that just started has no job agent for a while (minutes on a loaded node)
    for attempt in Retrying(stop=stop_after_delay(240), wait=wait_fixed(1), reraise=True,
                            retry=retry_if_exception_message(match=".*No available agent.*")):
        with attempt:
            return JobSubmissionClient(url).submit_job(entrypoint=entry)
    raise AssertionError("unreachable")


def main(cfg: MonitorJobConfig, settings: Settings, log=print) -> dict:
    """One monitoring pass; returns {"decisions", "report", "submitted"}."""
    from features.lake import read_bars
    from serving.outcomes import served_predictions
    from training.drift import offline_drift, universe_regime
    from training.monitor import decide, live_metrics, realised, rolling_rank_ic
    from training.monitor_record import (
        previous_champion_live_ic,
        record_decision,
        validation_rank_ic,
        write_report,
    )
    from training.registry import promote, rollback

    settings = settings.resolved()
    served = served_predictions(settings.data_dir / "audit")
    bars = read_bars(settings.bars_dir)
    outcomes = realised(served, bars)
    live = live_metrics(outcomes, cfg.rules.window_dates)
    drift = offline_drift(settings.offline_dir / "features.parquet", cfg.rules.window_dates)
    shifted = float(drift["shifted"].mean()) if len(drift) else 0.0
    log(f"monitor: {len(served)} served forecasts, {len(outcomes)} realised; "
        f"{int(drift['shifted'].sum()) if len(drift) else 0}/{len(drift)} features drifted")
    decisions, submitted = [], None
    for row in live[live["alias"] == "champion"].to_dict("records"):
        uri = settings.tracking_uri
        _, prev_ic = previous_champion_live_ic(uri, row["model"])
        d = decide(row, cfg.rules, shifted_share=shifted, previous_champion_ic=prev_ic,
                   validation_rank_ic=validation_rank_ic(uri, row["model"], row["version"]))
        record_decision(uri, d)
        decisions.append(d)
        log(f"  {d.name} v{d.version} h{d.horizon}: {d.action.upper()} — {d.reason}")
        if not cfg.act:
            continue
        if d.action == "rollback":
            frm, to = rollback(uri, d.name, bundle_root=settings.models_dir)
            log(f"    rolled back v{frm} -> v{to}")
        elif d.action == "retrain" and submitted is None:
            submitted = submit_retrain(settings, cfg)
            log(f"    retrain submitted through the Ray Jobs API: {submitted}")
    if cfg.act and submitted is None:  # a submitted retrain job promotes by itself
        for name in sorted(set(live["model"])):
            p = promote(settings.tracking_uri, name, margin=cfg.promotion_margin,
                        min_seeds=cfg.promotion_min_seeds, bundle_root=settings.models_dir)
            if p.challenger:
                log(f"  {name}: challenger v{p.challenger} "
                    f"{'PROMOTED' if p.promoted else 'not promoted'}: {p.reason}")
    out = settings.reports_dir / "monitor" / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    paths = write_report(out, live=live, decisions=decisions, drift=drift,
                         rolling=rolling_rank_ic(outcomes), regime=universe_regime(bars),
                         meta={"rules": cfg.rules.__dict__, "served": len(served),
                               "realised": len(outcomes), "act": cfg.act,
                               "retrain_job": submitted})
    log(f"  report: {paths['html']}")
    return {"decisions": decisions, "report": paths, "submitted": submitted}


def _parse(argv=None) -> MonitorJobConfig:
    p = argparse.ArgumentParser(prog="python -m ray_apps.monitor", description=__doc__)
    p.add_argument("--act", action="store_true", help="carry out rollback/retrain/promotion")
    p.add_argument("--window-dates", type=int, default=60)
    p.add_argument("--min-dates", type=int, default=20)
    p.add_argument("--dashboard-url", default=None)
    a = p.parse_args(argv)
    return MonitorJobConfig(rules=MonitorRules(window_dates=a.window_dates,
                                               min_dates=a.min_dates),
                            act=a.act, dashboard_url=a.dashboard_url)


if __name__ == "__main__":
    main(_parse(), Settings())
