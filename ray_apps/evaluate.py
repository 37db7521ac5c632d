"""Walk-forward report of every model against every baseline: ``stockray evaluate``.

Candidates: ``models`` (default `DEFAULT_MODELS` = `ALL_MODELS`: LightGBM regression and
lambdarank, the regime ensemble, the LSTM and the Transformer; a subset makes a quicker run). The sequence candidates'
settings come from ``configs/sequence.yaml`` (its ``model`` section with ``walkforward``
overrides); they are fitted per fold and seed inside that fold's job with the plain torch
loop, not Ray Train (see `training.walkforward`).

Data: ``default`` = the data dir's offline store (run ``stockray features`` first), or
``skfolio`` = 20 S&P 500 stocks 1990-2022 from the skfolio wheel's CSV (close only). Every
(fold, seed) runs as a 1-CPU Ray task on a local cluster (progress line per finished task;
Ctrl-C cancels the rest) unless ``parallel=False``. Writes
``<data_dir>/reports/walkforward-h{h}-{data}/report.{json,html}``, logs an MLflow run in
experiment ``stockray-evaluate`` and, for the default data with ``attach``, records the
per-seed RankIC on the newest registered version of each family (what `stockray promote`
compares).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from features.settings import Settings

ALL_MODELS = ("lgbm_reg", "lgbm_rank", "regime_ensemble", "lstm", "transformer")
# Default-universe report (18 folds x 3 seeds, one Ray task per fold and seed) on the quiet
# 2-core box: all five candidates 121 s of walk-forward (2 min 41 s end to end), the three
# LightGBM ones alone 40 s (1 min 15 s). Every model is in the default report; `--models`
# picks a subset (`stockray retrain` evaluates the LightGBM families it promotes).
DEFAULT_MODELS = ALL_MODELS


@dataclass
class EvaluateConfig:
    data: str = "default"  # "default" (offline store) | "skfolio"
    horizon: int = 5
    config_path: Path | None = None
    models: tuple[str, ...] = DEFAULT_MODELS  # walk-forward candidates (MODEL_NAMES)
    sequence_config_path: Path | None = None  # default configs/sequence.yaml
    max_folds: int | None = None
    seeds: tuple[int, ...] | None = None
    parallel: bool = True  # one Ray task per (fold, seed) on a local cluster
    attach: bool = True  # record scores on the newest version per family (default data)


@dataclass
class EvaluateResult:
    result: object  # training.walkforward.WalkForwardResult
    paths: dict
    mlflow_run: str
    attached: dict


def _newest_versions(settings: Settings, horizon: int, families) -> dict:
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


def main(cfg: EvaluateConfig, settings: Settings, log=print) -> EvaluateResult:
    from ray_apps.retrain import attach_to_versions, evaluate_walkforward, log_evaluation
    from training.config import DEFAULT_CONFIG, load_experiment
    from training.walkforward import (
        SEQUENCE_MODELS,
        load_offline_frame,
        offline_snapshot_hash,
        sequence_walkforward_settings,
        skfolio_frame,
        write_walkforward_report,
    )

    settings = settings.resolved()
    exp = load_experiment(cfg.config_path or DEFAULT_CONFIG)
    if cfg.data == "default":
        frame = load_offline_frame(settings.offline_dir)
        data_hash = offline_snapshot_hash(settings.offline_dir)
        desc = (f"default universe, offline store {settings.offline_dir} "
                f"({', '.join(sorted(frame['ticker'].unique()))})")
    elif cfg.data == "skfolio":
        frame, data_hash = skfolio_frame()
        desc = ("skfolio 20 S&P 500 stocks 1990-2022, adjusted close only "
                "(open=high=low=close: ATR degenerates to mean |close move|, no volume)")
    else:
        raise ValueError(f"data must be 'default' or 'skfolio', not {cfg.data!r}")
    over: dict = {"models": tuple(cfg.models)}
    if any(m in SEQUENCE_MODELS for m in cfg.models):
        over.update(sequence_walkforward_settings(cfg.sequence_config_path))
    if cfg.max_folds:
        over["max_folds"] = cfg.max_folds
    if cfg.seeds:
        over["seeds"] = tuple(cfg.seeds)
    wf = exp.walkforward_for(cfg.horizon, **over)
    if cfg.parallel:
        import ray

        from ray_apps.cluster import local_cluster

        if ray.is_initialized():
            res = evaluate_walkforward(frame, cfg.horizon, wf, parallel=True, log=log)
        else:
            with local_cluster(settings, dashboard=False):
                res = evaluate_walkforward(frame, cfg.horizon, wf, parallel=True, log=log)
    else:
        res = evaluate_walkforward(frame, cfg.horizon, wf, parallel=False, log=log)
    out_dir = settings.reports_dir / f"walkforward-h{cfg.horizon}-{cfg.data}"
    paths = write_walkforward_report(res, out_dir, title=f"stockray walk-forward h={cfg.horizon}"
                                     f" ({cfg.data})", data_desc=desc, data_hash=data_hash)
    run_id = log_evaluation(settings, res, paths, data_desc=desc, data_hash=data_hash,
                            config=exp.to_dict())
    attached = {}
    if cfg.attach and cfg.data == "default":
        versions = _newest_versions(settings, cfg.horizon, exp.families)
        attached = attach_to_versions(settings, res, versions, paths, data_desc=desc,
                                      data_hash=data_hash)
    return EvaluateResult(res, paths, run_id, attached)
