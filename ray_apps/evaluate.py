"""Walk-forward report of every model against every baseline: ``stockray evaluate``.

Candidates: ``models`` (default `DEFAULT_MODELS` = `ALL_MODELS`: LightGBM regression and
lambdarank, the regime ensemble, the LSTM and the Transformer; a subset makes a quicker run).
The sequence candidates' settings come from ``configs/sequence.yaml`` (its ``model`` section
with ``walkforward`` overrides); they are fitted per fold and seed inside that fold's job with
the plain torch loop, not Ray Train (see `training.walkforward`).

Data: ``default`` = the data dir's offline store (run ``stockray features`` first), or
``skfolio`` = 20 S&P 500 stocks 1990-2022 from the skfolio wheel's CSV (close only). Every
(fold, seed) runs as a 1-CPU Ray task on a local cluster (progress line per finished task;
Ctrl-C cancels the rest) unless ``parallel=False``. Writes
``<data_dir>/reports/walkforward-h{h}-{data}/report.{json,html}``, logs an MLflow run in
experiment ``stockray-evaluate`` and, for the default data with ``attach``, records the
per-seed RankIC on the newest registered version of each family (what `stockray promote`
compares). The job itself is `training.lifecycle.evaluation.run_evaluate`.
"""

from __future__ import annotations

from features.settings import Settings
from ray_apps.cluster import local_cluster
from training.lifecycle.config import ALL_MODELS, DEFAULT_MODELS, EvaluateConfig, EvaluateResult
from training.lifecycle.evaluation import run_evaluate

__all__ = ["ALL_MODELS", "DEFAULT_MODELS", "EvaluateConfig", "EvaluateResult", "main"]


def _cluster(settings: Settings):
    return local_cluster(settings, dashboard=False)


def main(cfg: EvaluateConfig, settings: Settings, log=print) -> EvaluateResult:
    """`run_evaluate`, on a local Ray cluster started here when ``cfg.parallel`` and Ray is
    not connected yet."""
    return run_evaluate(cfg, settings, log=log, cluster=_cluster)
