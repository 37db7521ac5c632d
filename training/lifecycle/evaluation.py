"""Walk-forward evaluation as a job: every (fold, seed) as a Ray task, one MLflow run per
report, the per-seed scores recorded on registry versions (what the promotion rule reads),
and `run_evaluate`, the body of ``stockray evaluate``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import asdict

from features.settings import Settings
from training.lifecycle.config import EvaluateConfig, EvaluateResult


def evaluate_walkforward(frame, wf_cfg, *, parallel: bool, log=print, feature_names=None):
    """`training.walkforward.run_walkforward` on ``feature_names`` (default every served
    feature); when ``parallel`` (Ray connected) every (fold, seed) is a Ray task
    (`ray_fold_map`)."""
    from features.pipeline import FEATURE_NAMES
    from training.walkforward import run_walkforward

    return run_walkforward(frame, list(feature_names or FEATURE_NAMES), wf_cfg, log=log,
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

    from features.pipeline_metrics import record_walkforward
    from training.registry import config_hash, ensure_experiment, git_revision

    record_walkforward(result.summary(), result.config.horizon)
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
    mu, sd = float(row[f"{m}_mean"]), float(row[f"{m}_std"])
    if not math.isfinite(mu):
        return "n/a"
    return f"{mu:.4f}" + (f" ± {sd:.4f}" if math.isfinite(sd) else "")


def table_markdown(result) -> str:
    """The comparison table of a walk-forward as Markdown (model cards)."""
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
                          walkforward={"data": data_desc, "table": table_markdown(result),
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


def newest_versions(settings: Settings, horizon: int, families) -> dict:
    """The newest registered version of each family at ``horizon`` (absent names skipped)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from training.registry import registered_name

    client = mlflow.MlflowClient(tracking_uri=settings.tracking_uri)
    out = {}
    for fam in families:
        name = registered_name(fam, horizon)
        try:
            versions = client.search_model_versions(f"name='{name}'")
        except MlflowException:
            continue
        if versions:
            v = max(versions, key=lambda m: int(m.version))
            out[name] = {"version": str(v.version), "family": fam, "horizon": horizon}
    return out


def _data(cfg: EvaluateConfig, settings: Settings):
    """(frame, snapshot hash, description) of ``cfg.data``."""
    from training.data import load_training_frame, offline_snapshot_hash, skfolio_frame

    if cfg.data == "default":
        frame = load_training_frame(settings.offline_dir)
        desc = (f"default universe, offline store {settings.offline_dir} "
                f"({', '.join(sorted(frame['ticker'].unique()))})")
        return frame, offline_snapshot_hash(settings.offline_dir), desc
    if cfg.data == "skfolio":
        frame, data_hash = skfolio_frame()
        return frame, data_hash, ("skfolio 20 S&P 500 stocks 1990-2022, adjusted close only "
                                  "(open=high=low=close: ATR degenerates to mean |close "
                                  "move|, no volume)")
    raise ValueError(f"data must be 'default' or 'skfolio', not {cfg.data!r}")


def run_evaluate(cfg: EvaluateConfig, settings: Settings, log=print,
                 cluster: Callable[[Settings], AbstractContextManager] | None = None
                 ) -> EvaluateResult:
    """The walk-forward report of ``stockray evaluate`` (see `ray_apps.evaluate`).

    Args:
        cfg: data, horizon (None: the experiment's first), candidates, folds, seeds.
        settings: data dir, registry.
        log: progress lines.
        cluster: ``settings -> context manager`` that starts a local Ray cluster, used when
            ``cfg.parallel`` and Ray is not connected yet.
    """
    from training.config import (
        DEFAULT_CONFIG,
        load_experiment,
        sequence_walkforward_settings,
    )
    from training.walkforward import SEQUENCE_MODELS, write_walkforward_report

    settings = settings.resolved()
    exp = load_experiment(cfg.config_path or DEFAULT_CONFIG)
    horizon = cfg.horizon or exp.horizons[0]
    frame, data_hash, desc = _data(cfg, settings)
    over: dict = {"models": tuple(cfg.models)}
    if any(m in SEQUENCE_MODELS for m in cfg.models):
        over.update(sequence_walkforward_settings(cfg.sequence_config_path))
    if cfg.max_folds:
        over["max_folds"] = cfg.max_folds
    if cfg.seeds:
        over["seeds"] = tuple(cfg.seeds)
    wf = exp.walkforward_for(horizon, **over)
    if cfg.parallel:
        import ray

        if ray.is_initialized() or cluster is None:
            res = evaluate_walkforward(frame, wf, parallel=ray.is_initialized(), log=log)
        else:
            with cluster(settings):
                res = evaluate_walkforward(frame, wf, parallel=True, log=log)
    else:
        res = evaluate_walkforward(frame, wf, parallel=False, log=log)
    out_dir = settings.reports_dir / f"walkforward-h{horizon}-{cfg.data}"
    paths = write_walkforward_report(res, out_dir, title=f"stockray walk-forward h={horizon}"
                                     f" ({cfg.data})", data_desc=desc, data_hash=data_hash)
    run_id = log_evaluation(settings, res, paths, data_desc=desc, data_hash=data_hash,
                            config=exp.to_dict())
    attached = {}
    if cfg.attach and cfg.data == "default":
        versions = newest_versions(settings, horizon, exp.families)
        attached = attach_to_versions(settings, res, versions, paths, data_desc=desc,
                                      data_hash=data_hash)
    return EvaluateResult(res, paths, run_id, attached)
