"""Retraining as one Ray job: ingest -> validate -> features -> train -> evaluate -> promote.

``stockray retrain`` or ``python -m ray_apps.retrain`` (what ``stockray submit -- stockray
retrain`` / KubeRay run). Standalone it starts a local Ray cluster (`ray_apps.cluster`); inside
``ray job submit`` (``RAY_ADDRESS`` is set by the job supervisor) it joins that cluster with
``ray.init(address="auto")``. An unset ``RAY_ADDRESS`` never attaches to whatever cluster happens
to run on the machine — a shared host may run other people's clusters.

The steps, their keys and the resumable state file live in `training.lifecycle` (idempotent:
an unchanged re-run skips every step; a crashed run resumes at the failed step). This module
connects Ray and hands the steps the ingest and features stages.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from features.settings import Settings
from ray_apps import build_features, ingest
from ray_apps.cluster import ray_connection
from training.lifecycle.config import STEPS, RetrainConfig, RetrainResult, StepFailed
from training.lifecycle.run import run_retrain
from training.lifecycle.state import load_state, state_path

__all__ = ["STEPS", "RetrainConfig", "RetrainResult", "StepFailed", "load_state", "main"]


def _ingest(cfg: RetrainConfig, settings: Settings):
    return ingest.main(ingest.IngestConfig(files=list(cfg.files), tickers=cfg.tickers,
                                           start=cfg.start, end=cfg.end, index_file=cfg.index_file,
                                           index_ticker=cfg.index_ticker), settings)


def _features(engine: str, settings: Settings):
    return build_features.main(build_features.FeaturesConfig(engine=engine), settings)


def main(cfg: RetrainConfig, settings: Settings, log: Callable[[str], None] = print,
         step_funcs: dict[str, Callable] | None = None) -> RetrainResult:
    """Run the pipeline on the connected (or a new local) Ray cluster, skipping done steps.

    Args:
        step_funcs: replace step implementations (tests inject a crash this way).

    Raises:
        training.lifecycle.config.StepFailed: a step raised; re-running resumes there.
    """
    settings = settings.resolved()
    with ray_connection(settings, cfg.auth) as how:
        log(f"retrain: Ray {how}; state {state_path(settings)}")
        return run_retrain(cfg, settings, ingest=_ingest, build_features=_features, log=log,
                           step_funcs=step_funcs)


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
