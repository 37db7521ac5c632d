"""Retraining as one Ray job: ingest -> validate -> features -> train -> evaluate -> promote.

``stockray retrain`` or ``python -m ray_apps.retrain`` (what ``stockray submit -- stockray
retrain`` / KubeRay run). Standalone it starts a local Ray cluster (`ray_apps.cluster`); inside
``ray job submit`` (``RAY_ADDRESS`` is set by the job supervisor) it joins that cluster with
``ray.init(address="auto")``. An unset ``RAY_ADDRESS`` never attaches to whatever cluster happens
to run on the machine — a shared host may run other people's clusters.

**Idempotent and resumable.** Each step has a key: a hash of what it depends on (config hash,
data snapshot hashes of the lake / offline store, git revision, the previous step's output).
The state file ``<data_dir>/retrain/state.json`` records, per step, the key it finished with
and its output. A step whose recorded key equals its current key is skipped; so re-running with
unchanged data and code does nothing new, and a run that crashed after step k resumes at k+1
(steps 1..k are skipped because their keys still match). A data step whose files were
changed or deleted since (lake / offline store hash differs) runs again. ``force`` re-runs
every step.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from features.durable import atomic_write_json
from features.settings import Settings
from features.sources import DEFAULT_TICKERS, MARKET_TICKER
from ray_apps.cluster import ray_connection

STEPS = ("ingest", "validate", "features", "train", "evaluate", "promote")


@dataclass
class RetrainConfig:
    """What ``stockray retrain`` runs."""

    config_path: Path | None = None  # experiment config; default configs/lgbm.yaml
    tickers: tuple[str, ...] = DEFAULT_TICKERS  # embedded universe (ignored with files)
    files: list[Path] = field(default_factory=list)  # user OHLCV files instead
    start: str | None = None
    end: str | None = None
    engine: str = "local"  # features: one process; "ray" = Ray Data (slower at this size)
    promote: bool = True  # apply the promotion rule at the end
    force: bool = False  # ignore the recorded state, run every step
    max_folds: int | None = None  # cap walk-forward folds (quick runs); None = config's
    seeds: tuple[int, ...] | None = None  # override the config's seeds
    num_boost_round: int | None = None  # override the config's boosting rounds
    auth: bool = True  # token auth for a cluster this job starts itself


@dataclass
class RetrainResult:
    ran: list[str]
    skipped: list[str]
    outputs: dict[str, dict]
    state_file: Path


class StepFailed(RuntimeError):
    """A retrain step raised; the state keeps every earlier step, so a re-run resumes here."""


# --- state ----------------------------------------------------------------------------------------

def state_path(settings: Settings) -> Path:
    return settings.data_dir / "retrain" / "state.json"


def load_state(settings: Settings) -> dict:
    p = state_path(settings)
    return json.loads(p.read_text()) if p.exists() else {"steps": {}}


def _save_state(settings: Settings, state: dict) -> None:
    p = state_path(settings)
    atomic_write_json(p, state, indent=2, default=str)  # a crash never leaves half a state


# --- Ray ------------------------------------------------------------------------------------------

# ray_connection lives in ray_apps.cluster (shared with `stockray features` / `train`).


# --- steps ----------------------------------------------------------------------------------------

@dataclass
class _Ctx:
    cfg: RetrainConfig
    settings: Settings
    exp: object  # training.config.LgbmExperiment
    outputs: dict
    log: Callable[[str], None]


def _lake_hash(settings: Settings) -> str:
    from training.walkforward import files_sha256

    files = sorted(settings.bars_dir.glob("ticker=*/bars.parquet"))
    # names alone collide across tickers (all bars.parquet): hash "ticker=X/bars.parquet"
    import hashlib

    h = hashlib.sha256()
    for f in files:
        h.update(f.parent.name.encode())
        h.update(files_sha256([f]).encode())
    return h.hexdigest()


def _ingest_key(ctx: _Ctx) -> dict:
    from training.walkforward import files_sha256

    c = ctx.cfg
    return {"tickers": list(c.tickers), "start": c.start, "end": c.end,
            "files": [files_sha256([f]) for f in c.files]}


def step_ingest(ctx: _Ctx) -> dict:
    from ray_apps import ingest

    c = ctx.cfg
    rep = ingest.main(ingest.IngestConfig(files=list(c.files), tickers=c.tickers,
                                          start=c.start, end=c.end), ctx.settings)
    if rep.failed and not rep.sources:
        raise ValueError(f"ingest failed for every source: {rep.failed}")
    d = rep.to_dict()
    return {"rows_ok": d.get("rows_ok"), "rows_quarantined": d.get("rows_quarantined"),
            "lake_sha256": _lake_hash(ctx.settings)}


def step_validate(ctx: _Ctx) -> dict:
    """Contract checks on the lake before any compute: enough stocks and history, no
    duplicate (ticker, ts), positive prices, the market index present."""
    import numpy as np

    from features.lake import read_bars

    bars = read_bars(ctx.settings.bars_dir)
    problems = []
    stocks = bars[bars["ticker"] != MARKET_TICKER]
    if stocks["ticker"].nunique() < 2:
        problems.append(f"{stocks['ticker'].nunique()} stock ticker(s); ranking needs >= 2")
    if bars.duplicated(["ticker", "ts"]).any():
        problems.append(f"{int(bars.duplicated(['ticker', 'ts']).sum())} duplicate rows")
    if not (np.asarray(bars["close"], float) > 0).all():
        problems.append("non-positive closes")
    if MARKET_TICKER not in set(bars["ticker"]):
        problems.append(f"no market index {MARKET_TICKER}: regime features would be missing")
    wf = ctx.exp.walkforward
    need = wf.train_days + wf.valid_days + wf.test_days + 2 * max(ctx.exp.horizons)
    n_dates = stocks["ts"].nunique()
    if n_dates < need:
        problems.append(f"{n_dates} trading dates; one walk-forward fold needs {need}")
    if problems:
        raise ValueError("lake failed validation: " + "; ".join(problems))
    return {"stock_tickers": sorted(stocks["ticker"].unique()), "dates": int(n_dates),
            "first": str(stocks["ts"].min().date()), "last": str(stocks["ts"].max().date())}


def step_features(ctx: _Ctx) -> dict:
    from ray_apps import build_features
    from training.walkforward import offline_snapshot_hash

    res = build_features.main(build_features.FeaturesConfig(engine=ctx.cfg.engine),
                              ctx.settings)
    return {"rows": res.rows, "tickers": res.tickers,
            "data_sha256": offline_snapshot_hash(ctx.settings.offline_dir)}


def _params(ctx: _Ctx):
    from training.lgbm import LgbmParams

    p = asdict(ctx.exp.params)
    if ctx.cfg.num_boost_round:
        p["num_boost_round"] = ctx.cfg.num_boost_round
    return LgbmParams(**p)


def step_train(ctx: _Ctx) -> dict:
    from features.pipeline import FEATURE_NAMES
    from training.data import load_training_frame
    from training.lgbm import LgbmParams
    from training.registry import ensure_experiment, register_horizon
    from training.tune import train_horizons, tune_lgbm

    s, exp = ctx.settings, ctx.exp
    data_hash = ctx.outputs["features"]["data_sha256"]
    frame = load_training_frame(s.offline_dir)
    base = _params(ctx)
    tuned = None
    if exp.tune.num_samples > 0:
        t = exp.tune
        base, trials = tune_lgbm(frame, FEATURE_NAMES, horizon=exp.horizons[0],
                                 base_params=base, search=t.search_space,
                                 num_samples=t.num_samples, start=exp.segments.train[0],
                                 end=exp.segments.valid[1], max_folds=t.max_folds,
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
        results = train_horizons(frame, FEATURE_NAMES, exp.horizons, s.ray_dir / "results",
                                 params=params, experiment=f"retrain-{family}")
        for h, res in sorted(results.items()):
            rv = register_horizon(res, tracking_uri=s.tracking_uri, experiment_id=exp_id,
                                  bundle_root=s.models_dir, params=asdict(params),
                                  family=family, data_hash=data_hash,
                                  tags={"config_sha256": ctx.outputs["_config_hash"]})
            registered[rv.name] = {"version": rv.version, "alias": rv.alias,
                                   "family": family, "horizon": h}
            ctx.log(f"  registered {rv.name} v{rv.version} as {rv.alias}")
    return {"registered": registered, "tuned": tuned}


def evaluate_walkforward(frame, horizon: int, wf_cfg, *, parallel: bool, log=print):
    """`run_walkforward`; when ``parallel`` (Ray connected) every (fold, seed) is a Ray task
    (`ray_fold_map`)."""
    from features.pipeline import FEATURE_NAMES
    from training.walkforward import run_walkforward

    return run_walkforward(frame, FEATURE_NAMES, wf_cfg, log=log,
                           map_folds=ray_fold_map if parallel else None)


def ray_fold_map(plan, cfg, log=None, poll_s: float = 1.0):
    """`training.walkforward.fold_predictions` of every (fold, seed) as 1-CPU Ray tasks.

    The labelled rows go to the object store once. Tasks are submitted latest fold first:
    the walk-forward is anchored, so later folds train on more rows and take longer, and
    starting the long ones first packs the cores better. Each finished task logs a line with
    the count done and a rough time left. Ctrl-C (or any task error) cancels what is still
    pending before the exception propagates; the driver waits in short ``ray.wait`` slices
    so a signal is seen within ``poll_s``.

    Returns:
        list of `FoldOutput`, one per (fold, seed).
    """
    import time

    import ray

    from training.walkforward import fold_predictions

    task = ray.remote(num_cpus=1)(fold_predictions)
    data_ref = ray.put(plan.data)
    t0 = time.perf_counter()
    pending = {}
    for fold in sorted(plan.folds, key=lambda f: -f.index):
        for seed in cfg.seeds:
            ref = task.remote(data_ref, plan.features, fold, cfg, (seed,))
            pending[ref] = (fold.index, seed)
    total, outputs = len(pending), []
    n_folds = len(plan.folds)
    if log:
        log(f"  walk-forward: {n_folds} folds x {len(cfg.seeds)} seeds = {total} Ray tasks "
            f"({', '.join(cfg.models)})")
    try:
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1, timeout=poll_s)
            for ref in done:
                fold_i, seed = pending.pop(ref)
                out = ray.get(ref)
                outputs.append(out)
                if log:
                    el = time.perf_counter() - t0
                    left = el / len(outputs) * len(pending)
                    log(f"  fold {fold_i + 1}/{n_folds} seed {seed} done in {out.seconds:.0f}s "
                        f"[{len(outputs)}/{total}, {el / 60:.1f} min elapsed, "
                        f"~{left / 60:.1f} min left]")
    except BaseException:
        for ref in pending:
            ray.cancel(ref, force=True)
        if log:
            log(f"  walk-forward stopped: cancelled {len(pending)} pending task(s)")
        raise
    return outputs


def log_evaluation(settings: Settings, result, paths: dict, *, data_desc: str, data_hash: str,
                   config: dict, experiment: str = "stockray-evaluate") -> str:
    """One MLflow run per evaluation: params, summary metrics, report artifacts, hashes."""
    import mlflow

    from training.registry import config_hash, ensure_experiment, git_revision

    exp_id = ensure_experiment(settings.tracking_uri, settings.artifact_uri, experiment)
    mlflow.set_tracking_uri(settings.tracking_uri)
    cfg = result.config
    with mlflow.start_run(experiment_id=exp_id,
                          run_name=f"walkforward-h{cfg.horizon}-{data_desc.split()[0]}") as run:
        mlflow.set_tags({"git_revision": git_revision(), "data_snapshot_sha256": data_hash,
                         "data": data_desc, "config_sha256": config_hash(config),
                         "verdict": " ".join(result.verdict())[:5000]})
        mlflow.log_params({"horizon": cfg.horizon, "folds": len(result.folds),
                           "seeds": ",".join(map(str, cfg.seeds)),
                           "train_days": cfg.train_days, "test_days": cfg.test_days,
                           "n_features": len(result.feature_names),
                           **{f"lgbm_{k}": v for k, v in asdict(cfg.params).items()}})
        mlflow.log_metrics({**result.summary(), "wall_time_s": result.seconds})
        for p in paths.values():
            mlflow.log_artifact(str(p), "report")
        mlflow.log_dict(config, "config.json")
        return run.info.run_id


def _cell(row, m: str) -> str:
    import math

    mu, sd = float(row[f"{m}_mean"]), float(row[f"{m}_std"])
    if not math.isfinite(mu):
        return "n/a"
    return f"{mu:.4f}" + (f" ± {sd:.4f}" if math.isfinite(sd) else "")


def _table_markdown(result) -> str:
    t = result.table()
    lines = ["| kind | name | seeds | RankIC | IC | Sharpe |", "|---|---|---|---|---|---|"]
    for (kind, name), row in t.iterrows():
        lines.append(f"| {kind} | {name} | {int(row['n_seeds'])} | {_cell(row, 'rank_ic')} | "
                     f"{_cell(row, 'ic')} | {_cell(row, 'bt_sharpe')} |")
    return "\n".join(lines)


def attach_to_versions(settings: Settings, result, versions: dict, paths: dict, *,
                       data_desc: str, data_hash: str) -> dict:
    """Record the walk-forward on each registered version of the evaluated horizon (scores
    for the promotion rule, metrics, report artifacts, refreshed model card)."""
    import mlflow

    from training.registry import model_card, record_walkforward
    from training.walkforward import FAMILY_MODEL

    client = mlflow.MlflowClient(tracking_uri=settings.tracking_uri)
    out = {}
    for name, v in versions.items():
        if v["horizon"] != result.config.horizon:
            continue
        model = FAMILY_MODEL[v["family"]]
        seeds = result.seed_metric(model, "rank_ic")
        run = client.get_run(client.get_model_version(name, v["version"]).run_id)
        card = model_card(name=name, version=v["version"], family=v["family"],
                          horizon=v["horizon"], params=dict(run.data.params),
                          data_hash=data_hash,
                          walkforward={"data": data_desc, "table": _table_markdown(result),
                                       "verdict": [x for x in result.verdict()
                                                   if x.startswith(model + " ")],
                                       "rank_ic_seeds": seeds})
        summary = {k: val for k, val in result.summary().items()
                   if k.startswith(f"wf_{model}_")}
        summary["wf_rank_ic_mean"] = float(sum(seeds) / len(seeds)) if seeds else float("nan")
        record_walkforward(settings.tracking_uri, name, v["version"], rank_ic_seeds=seeds,
                           metrics=summary, card=card, artifacts=paths, data_hash=data_hash)
        out[name] = {"version": v["version"], "rank_ic_seeds": seeds}
    return out


def step_evaluate(ctx: _Ctx) -> dict:
    import ray

    from training.data import load_training_frame
    from training.walkforward import format_table, write_walkforward_report

    s, exp = ctx.settings, ctx.exp
    data_hash = ctx.outputs["features"]["data_sha256"]
    frame = load_training_frame(s.offline_dir)
    out = {}
    for h in exp.horizons:
        wf = exp.walkforward_for(h, params=_params(ctx),
                                 **({"max_folds": ctx.cfg.max_folds} if ctx.cfg.max_folds
                                    else {}),
                                 **({"seeds": tuple(ctx.cfg.seeds)} if ctx.cfg.seeds else {}))
        res = evaluate_walkforward(frame, h, wf, parallel=ray.is_initialized(), log=ctx.log)
        desc = f"offline store {s.offline_dir} ({', '.join(ctx.outputs['features']['tickers'])})"
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


def step_promote(ctx: _Ctx) -> dict:
    from training.registry import promote

    if not ctx.cfg.promote:
        return {"skipped": "promotion disabled (--no-promote)"}
    lc = ctx.exp.lifecycle
    out = {}
    for name in ctx.outputs["train"]["registered"]:
        d = promote(ctx.settings.tracking_uri, name, margin=lc.promotion_margin,
                    min_seeds=lc.min_seeds, bundle_root=ctx.settings.models_dir)
        out[name] = {"promoted": d.promoted, "reason": d.reason, "champion_before": d.champion,
                     "challenger": d.challenger}
        ctx.log(f"  {name}: {'PROMOTED' if d.promoted else 'kept champion'} — {d.reason}")
    return out


STEP_FUNCS: dict[str, Callable[[_Ctx], dict]] = {
    "ingest": step_ingest, "validate": step_validate, "features": step_features,
    "train": step_train, "evaluate": step_evaluate, "promote": step_promote,
}


def _key(step: str, ctx: _Ctx) -> str:
    """What a step's result depends on, hashed (`_deps`)."""
    from training.registry import config_hash

    return config_hash(_deps(step, ctx))


def _deps(step: str, ctx: _Ctx) -> dict:
    """What a step's result depends on (recorded in the state beside its hash)."""
    from training.registry import git_revision

    o = ctx.outputs
    deps: dict = {"step": step}
    if step == "ingest":
        deps["input"] = _ingest_key(ctx)
    elif step == "validate":
        deps["lake"] = _lake_hash(ctx.settings)
        deps["config"] = o["_config_hash"]
    elif step == "features":
        deps["lake"] = _lake_hash(ctx.settings)
        deps["engine"] = ctx.cfg.engine
    else:
        deps["data"] = o.get("features", {}).get("data_sha256")
        deps["config"] = o["_config_hash"]
        deps["git"] = git_revision()
        if step in ("evaluate", "promote"):
            deps["registered"] = o.get("train", {}).get("registered")
        if step == "promote":
            deps["evaluated"] = {h: v.get("attached") for h, v in o.get("evaluate", {}).items()}
    return deps


def _outputs_intact(step: str, output: dict, settings: Settings) -> bool:
    """A finished data step only counts while what it wrote is still there, unchanged."""
    from training.walkforward import offline_snapshot_hash

    try:
        if step == "ingest":
            return output.get("lake_sha256") == _lake_hash(settings)
        if step == "features":
            return output.get("data_sha256") == offline_snapshot_hash(settings.offline_dir)
    except FileNotFoundError:
        return False
    return True


def main(cfg: RetrainConfig, settings: Settings,
         log: Callable[[str], None] = print,
         step_funcs: dict[str, Callable] | None = None) -> RetrainResult:
    """Run the pipeline on the connected (or a new local) Ray cluster, skipping done steps.

    Args:
        step_funcs: replace step implementations (tests inject a crash this way).

    Raises:
        StepFailed: a step raised; earlier steps stay recorded, so re-running resumes.
    """
    from training.config import DEFAULT_CONFIG, load_experiment
    from training.registry import config_hash

    settings = settings.resolved()
    exp = load_experiment(cfg.config_path or DEFAULT_CONFIG)
    funcs = {**STEP_FUNCS, **(step_funcs or {})}
    state = {"steps": {}} if cfg.force else load_state(settings)
    cfg_hash = config_hash({"experiment": exp.to_dict(), "max_folds": cfg.max_folds,
                            "seeds": cfg.seeds, "num_boost_round": cfg.num_boost_round,
                            "promote": cfg.promote})
    ctx = _Ctx(cfg, settings, exp, {"_config_hash": cfg_hash}, log)
    ran, skipped = [], []
    with ray_connection(settings, cfg.auth) as how:
        log(f"retrain: Ray {how}; state {state_path(settings)}")
        for i, step in enumerate(STEPS, 1):
            deps = _deps(step, ctx)
            key = config_hash(deps)
            rec = state["steps"].get(step)
            if (rec and rec.get("key") == key and rec.get("status") == "done"
                    and _outputs_intact(step, rec["output"], settings)):
                ctx.outputs[step] = rec["output"]
                skipped.append(step)
                log(f"[{i}/{len(STEPS)}] {step}: unchanged, skipped")
                continue
            t0 = time.perf_counter()
            try:
                out = funcs[step](ctx)
            except Exception as e:
                state["steps"][step] = {"key": key, "status": "failed", "error": repr(e)[:2000],
                                        "at": datetime.now(UTC).isoformat(timespec="seconds")}
                _save_state(settings, state)
                raise StepFailed(f"retrain step {step!r} failed: {e!r}; fix it and re-run — "
                                 f"finished steps are skipped") from e
            ctx.outputs[step] = out
            # later steps depend on this one's output: their recorded keys no longer match
            state["steps"][step] = {"key": key, "status": "done", "output": out,
                                    "depends_on": {k: v for k, v in deps.items()
                                                   if k not in ("registered", "evaluated")},
                                    "seconds": round(time.perf_counter() - t0, 1),
                                    "at": datetime.now(UTC).isoformat(timespec="seconds")}
            _save_state(settings, state)
            ran.append(step)
            log(f"[{i}/{len(STEPS)}] {step}: done ({time.perf_counter() - t0:.1f}s)")
    outputs = {k: v for k, v in ctx.outputs.items() if not k.startswith("_")}
    return RetrainResult(ran, skipped, outputs, state_path(settings))


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, default=None)
    ap.add_argument("--force", action="store_true")
    ap.add_argument("--max-folds", type=int, default=None)
    a = ap.parse_args()
    r = main(RetrainConfig(config_path=a.config, force=a.force, max_folds=a.max_folds),
             Settings())
    print(json.dumps({"ran": r.ran, "skipped": r.skipped}, indent=2))
