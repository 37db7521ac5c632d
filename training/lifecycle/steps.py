"""The retrain steps, one function each, and what each step's result depends on.

A step takes the run's `Ctx` and returns a JSON-able dict (recorded in the state). Its key is
the hash of `deps`: the config hash, the data snapshot hashes of the lake / offline store, the
git revision and the previous steps' outputs it reads.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from features.settings import Settings
from features.sources import MARKET_TICKER, files_sha256
from training.config import LgbmExperiment
from training.lifecycle import recent
from training.lifecycle.config import RetrainConfig
from training.lifecycle.state import lake_hash


@dataclass
class Ctx:
    """One retrain run: its config, settings, experiment, step outputs so far and the
    stage jobs it calls (``ingest(cfg, settings) -> report``, ``build_features(engine,
    settings) -> result``: the features stage's own entrypoints, passed in by the wiring)."""

    cfg: RetrainConfig
    settings: Settings
    exp: LgbmExperiment
    outputs: dict
    log: Callable[[str], None]
    ingest: Callable[..., Any]
    build_features: Callable[..., Any]


def step_ingest(ctx: Ctx) -> dict:
    rep = ctx.ingest(ctx.cfg, ctx.settings)
    if rep.failed and not rep.sources:
        raise ValueError(f"ingest failed for every source: {rep.failed}")
    if ctx.cfg.files:  # the user's universe only: nothing else may sit in this lake
        from features.coverage import summarize_names
        from features.lake import list_tickers

        other = sorted(set(list_tickers(ctx.settings.bars_dir)) - set(rep.stored_rows)
                       - {MARKET_TICKER})
        if other:
            raise ValueError(f"the lake of {ctx.settings.data_dir} also holds "
                             f"{summarize_names(other)} tickers not in your files; retrain "
                             "your universe in its own --data-dir so nothing is mixed in")
    d = rep.to_dict()
    return {"rows_ok": d.get("rows_ok"), "rows_quarantined": d.get("rows_quarantined"),
            "lake_sha256": lake_hash(ctx.settings)}


def step_validate(ctx: Ctx) -> dict:
    """Contract checks on the lake before any compute: enough stocks and history (walk-
    forward windows scaled to it), no duplicate (ticker, ts), positive prices. Without an
    index series the market context is derived from the universe (features step)."""
    import numpy as np

    from features.lake import read_bars
    from training.segments import scale_walkforward

    bars = read_bars(ctx.settings.bars_dir)
    problems = []
    stocks = bars[bars["ticker"] != MARKET_TICKER]
    if stocks["ticker"].nunique() < 2:
        problems.append(f"{stocks['ticker'].nunique()} stock ticker(s); ranking needs >= 2")
    if bars.duplicated(["ticker", "ts"]).any():
        problems.append(f"{int(bars.duplicated(['ticker', 'ts']).sum())} duplicate rows")
    if not (np.asarray(bars["close"], float) > 0).all():
        problems.append("non-positive closes")
    n_dates = stocks["ts"].nunique()
    wf = ctx.exp.walkforward
    try:
        wf = scale_walkforward(wf, n_dates, max(ctx.exp.horizons))
    except ValueError as e:
        problems.append(str(e))
    if problems:
        raise ValueError("lake failed validation: " + "; ".join(problems))
    return {"stock_tickers": sorted(stocks["ticker"].unique()), "dates": int(n_dates),
            "index": (MARKET_TICKER if MARKET_TICKER in set(bars["ticker"])
                      else "derived from the universe"),
            "walkforward_days": [wf.train_days, wf.valid_days, wf.test_days],
            "first": str(stocks["ts"].min().date()), "last": str(stocks["ts"].max().date())}


def step_features(ctx: Ctx) -> dict:
    from training.data import offline_snapshot_hash

    res = ctx.build_features(ctx.cfg.engine, ctx.settings)
    return {"rows": res.rows, "tickers": res.tickers,
            "data_sha256": offline_snapshot_hash(ctx.settings.offline_dir)}


def run_params(ctx: Ctx):
    """The experiment's `LgbmParams` with this run's overrides."""
    from training.lgbm import LgbmParams

    p = asdict(ctx.exp.params)
    if ctx.cfg.num_boost_round:
        p["num_boost_round"] = ctx.cfg.num_boost_round
    return LgbmParams(**p)


def step_train(ctx: Ctx) -> dict:
    from features.pipeline_metrics import record_training
    from training.data import load_training_frame
    from training.lgbm import LgbmParams
    from training.registry import ensure_experiment, register_horizon
    from training.text_inputs import model_inputs
    from training.tune import train_horizons, tune_lgbm

    s, exp = ctx.settings, ctx.exp
    data_hash = ctx.outputs["features"]["data_sha256"]
    # features: {text: true} adds the filled text inputs; fset is what the bundles record
    frame, fs, fset = model_inputs(load_training_frame(s.offline_dir), s.offline_dir,
                                   exp.features.text)
    seg = exp.segments.resolve(frame["ts"], gap=max(exp.horizons))
    if recent.after_decay(ctx):  # fit on the latest sessions, hold out the recent window
        seg = recent.train_segments(ctx, frame)
    base = run_params(ctx)
    tuned = None
    if exp.tune.num_samples > 0:
        t = exp.tune
        base, trials = tune_lgbm(frame, fs.kept, horizon=exp.horizons[0],
                                 base_params=base, search=t.search_space,
                                 num_samples=t.num_samples, start=seg["train"][0],
                                 end=seg["valid"][1], max_folds=t.max_folds,
                                 grace_period=t.grace_period,
                                 reduction_factor=t.reduction_factor,
                                 storage_path=s.ray_dir / "results", objective=t.objective)
        tuned = {k: getattr(base, k) for k in t.search_space}
        ctx.log(f"  ASHA: {len(trials)} trials, best {tuned}")
    exp_id = ensure_experiment(s.tracking_uri, s.artifact_uri, "stockray-retrain")
    registered = {}
    for family in exp.families:
        objective = "lambdarank" if family == "lgbmrank" else "regression"
        params = LgbmParams(**{**asdict(base), "objective": objective})
        t0 = time.perf_counter()
        results = train_horizons(frame, fs.kept, exp.horizons, s.ray_dir / "results",
                                 params=params, experiment=f"retrain-{family}",
                                 segments=seg)
        record_training(time.perf_counter() - t0, family)
        for h, res in sorted(results.items()):
            rv = register_horizon(res, tracking_uri=s.tracking_uri, experiment_id=exp_id,
                                  bundle_root=s.models_dir, params=asdict(params),
                                  family=family, data_hash=data_hash,
                                  tags={"config_sha256": ctx.outputs["_config_hash"]},
                                  feature_set=fset)
            registered[rv.name] = {"version": rv.version, "alias": rv.alias,
                                   "family": family, "horizon": h}
            ctx.log(f"  registered {rv.name} v{rv.version} as {rv.alias}")
    return {"registered": registered, "tuned": tuned,
            "segments": {k: list(v) for k, v in seg.items()}, "features": fs.to_dict()}


def step_evaluate(ctx: Ctx) -> dict:
    import ray

    from features.coverage import summarize_names
    from training.data import load_training_frame
    from training.lifecycle.evaluation import (
        attach_to_versions,
        evaluate_walkforward,
        log_evaluation,
    )
    from training.segments import scale_walkforward
    from training.walkforward import format_table, write_walkforward_report

    s, exp = ctx.settings, ctx.exp
    if recent.after_decay(ctx):  # judged on the recent window by the promote step instead
        ctx.log("  after-decay retrain: no walk-forward, the recent window judges")
        return {}
    data_hash = ctx.outputs["features"]["data_sha256"]
    frame = load_training_frame(s.offline_dir)
    if exp.features.text:  # the trained feature list holds the text inputs
        from training.text_inputs import with_text

        frame = with_text(frame, s.offline_dir)
    out = {}
    for h in exp.horizons:
        wf = exp.walkforward_for(h, params=run_params(ctx),
                                 **({"max_folds": ctx.cfg.max_folds} if ctx.cfg.max_folds
                                    else {}),
                                 **({"seeds": tuple(ctx.cfg.seeds)} if ctx.cfg.seeds else {}))
        wf = scale_walkforward(wf, frame["ts"].nunique(), h)
        res = evaluate_walkforward(frame, wf, parallel=ray.is_initialized(), log=ctx.log,
                                   feature_names=ctx.outputs["train"].get("features",
                                                                          {}).get("kept"))
        tickers = ctx.outputs["features"]["tickers"]
        desc = (f"offline store {s.offline_dir} (tickers {summarize_names(tickers)})"
                if len(tickers) > 10 else
                f"offline store {s.offline_dir} ({', '.join(tickers)})")
        paths = write_walkforward_report(res, s.reports_dir / f"walkforward-h{h}",
                                         title=f"stockray walk-forward, h={h}",
                                         data_desc=desc, data_hash=data_hash)
        run_id = log_evaluation(s, res, paths, data_desc=desc, data_hash=data_hash,
                                config=exp.to_dict())
        attached = attach_to_versions(s, res, ctx.outputs["train"]["registered"], paths,
                                      data_desc=desc, data_hash=data_hash)
        ctx.log(format_table(res))
        out[str(h)] = {"report": {k: str(v) for k, v in paths.items()}, "mlflow_run": run_id,
                       "attached": attached, "verdict": res.verdict(),
                       "seconds": round(res.seconds, 1)}
    return out


def step_promote(ctx: Ctx) -> dict:
    from training.registry import promote

    if not ctx.cfg.promote:
        return {"skipped": "promotion disabled (--no-promote)"}
    if recent.after_decay(ctx):
        return recent.promote_recent(ctx)
    lc = ctx.exp.lifecycle
    out = {}
    for name in ctx.outputs["train"]["registered"]:
        d = promote(ctx.settings.tracking_uri, name, margin=lc.promotion_margin,
                    min_seeds=lc.min_seeds, bundle_root=ctx.settings.models_dir)
        out[name] = {"promoted": d.promoted, "reason": d.reason, "champion_before": d.champion,
                     "challenger": d.challenger}
        ctx.log(f"  {name}: {'PROMOTED' if d.promoted else 'kept champion'} — {d.reason}")
    return out


STEP_FUNCS: dict[str, Callable[[Ctx], dict]] = {
    "ingest": step_ingest, "validate": step_validate, "features": step_features,
    "train": step_train, "evaluate": step_evaluate, "promote": step_promote,
}


def ingest_key(cfg: RetrainConfig) -> dict:
    return {"tickers": list(cfg.tickers), "start": cfg.start, "end": cfg.end,
            "files": [files_sha256([f]) for f in cfg.files],
            **({"index_file": files_sha256([cfg.index_file])} if cfg.index_file else {}),
            **({"index_ticker": cfg.index_ticker} if cfg.index_ticker else {})}


def deps(step: str, ctx: Ctx) -> dict:
    """What a step's result depends on (recorded in the state beside its hash)."""
    from training.registry import git_revision

    o = ctx.outputs
    d: dict = {"step": step}
    if step == "ingest":
        d["input"] = ingest_key(ctx.cfg)
    elif step == "validate":
        d["lake"] = lake_hash(ctx.settings)
        d["config"] = o["_config_hash"]
    elif step == "features":
        d["lake"] = lake_hash(ctx.settings)
        d["engine"] = ctx.cfg.engine
    else:
        d["data"] = o.get("features", {}).get("data_sha256")
        d["config"] = o["_config_hash"]
        d["git"] = git_revision()
        if step in ("evaluate", "promote"):
            d["registered"] = o.get("train", {}).get("registered")
        if step == "promote":
            d["evaluated"] = {h: v.get("attached") for h, v in o.get("evaluate", {}).items()}
    return d
