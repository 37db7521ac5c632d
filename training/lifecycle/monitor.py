"""One monitoring pass (the body of ``stockray monitor``).

Reads the served forecasts (given by the caller: the audit log belongs to serving), their
realised outcomes from the lake, the feature drift from the offline store and the market
regime; decides per served champion by the rules of `training.monitor`; records every
decision on the version (MLflow tags) and in ``<data_dir>/reports/monitor/<time>/``; with
``act`` carries them out: a rollback through the registry, a retrain through the caller's
``submit_retrain``, and the registry's promotion rule for any challenger. A retrain fired by
IC decay (not drift alone) is submitted as ``stockray retrain --after-decay --config ...``:
its challenger is judged on the recent window (`training.lifecycle.recent`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

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
    config_path: Path | None = None     # experiment whose lifecycle section is the rule
    promotion_margin: float | None = None  # None: the experiment's lifecycle.promotion_margin
    promotion_min_seeds: int | None = None  # None: the experiment's lifecycle.min_seeds
    after_decay: bool = True  # a decay retrain runs `retrain --after-decay` (recent window)


def retrain_job_args(cfg: MonitorJobConfig, d) -> tuple[str, ...]:
    """Arguments the retrain job of decision ``d`` gets before ``cfg.retrain_args``: with the
    `retrain` command and an IC decay (live RankIC under the floor or decayed from validation),
    ``--after-decay`` and the experiment config the rules came from."""
    f, r = d.figures, cfg.rules
    ic, val = f.get("live_rank_ic"), f.get("validation_rank_ic")
    decayed = ic is not None and (ic < r.ic_floor or (val is not None
                                                      and ic < val - r.ic_decay))
    if cfg.retrain_command != "retrain" or not cfg.after_decay or not decayed:
        return ()
    return ("--after-decay",
            *(("--config", str(cfg.config_path)) if cfg.config_path else ()))


def run_monitor(cfg: MonitorJobConfig, settings: Settings, *, served: pd.DataFrame,
                submit_retrain: Callable[[tuple[str, ...]], str], log=print) -> dict:
    """One monitoring pass; returns {"decisions", "report", "submitted"}.

    Args:
        served: the served forecasts (`serving.outcomes.served_predictions`).
        submit_retrain: ``(extra args) -> job id``: submits `stockray retrain` (called at
            most once, with ``act`` and a retrain decision; `retrain_job_args`).
    """
    from features.lake import read_bars
    from training.config import DEFAULT_CONFIG, load_experiment
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
    lc = load_experiment(cfg.config_path or DEFAULT_CONFIG).lifecycle
    margin = lc.promotion_margin if cfg.promotion_margin is None else cfg.promotion_margin
    min_seeds = lc.min_seeds if cfg.promotion_min_seeds is None else cfg.promotion_min_seeds
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
            extra = retrain_job_args(cfg, d)
            submitted = submit_retrain(extra)
            log(f"    retrain {' '.join(extra)} submitted through the Ray Jobs API: "
                f"{submitted}")
    if cfg.act and submitted is None:  # a submitted retrain job promotes by itself
        for name in sorted(set(live["model"])):
            p = promote(settings.tracking_uri, name, margin=margin, min_seeds=min_seeds,
                        bundle_root=settings.models_dir)
            if p.challenger:
                log(f"  {name}: challenger v{p.challenger} "
                    f"{'PROMOTED' if p.promoted else 'not promoted'}: {p.reason}")
    out = settings.reports_dir / "monitor" / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    paths = write_report(out, live=live, decisions=decisions, drift=drift,
                         rolling=rolling_rank_ic(outcomes), regime=universe_regime(bars),
                         meta={"rules": cfg.rules.__dict__, "served": len(served),
                               "realised": len(outcomes), "act": cfg.act,
                               "retrain_job": submitted,
                               "judgements": _recent_judgements(settings.reports_dir)})
    log(f"  report: {paths['html']}")
    return {"decisions": decisions, "report": paths, "submitted": submitted}


def _recent_judgements(reports_dir: Path, n: int = 5) -> list[dict]:
    """The latest recent-window judgements (the after-decay retrain jobs' verdicts), so the
    monitor report shows why a decay retrain was or was not promoted."""
    import json

    files = sorted((reports_dir / "monitor" / "judgements").glob("*.json"))[-n:]
    return [json.loads(f.read_text()) for f in files]
