"""What a retrain or evaluate job is asked to do (the experiment itself is `training.config`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from features.sources import DEFAULT_TICKERS

STEPS = ("ingest", "validate", "features", "train", "evaluate", "promote")

#: every walk-forward candidate (`training.walkforward.MODEL_NAMES`), the default report
ALL_MODELS = ("lgbm_reg", "lgbm_rank", "regime_ensemble", "lstm", "transformer")
# Every model is in the default report; `--models` picks a subset (`stockray retrain`
# evaluates the LightGBM families it promotes). Timings are in the README (walk-forward).
DEFAULT_MODELS = ALL_MODELS


@dataclass
class RetrainConfig:
    """What ``stockray retrain`` runs."""

    config_path: Path | None = None  # experiment config; default configs/lgbm.yaml
    tickers: tuple[str, ...] = DEFAULT_TICKERS  # embedded universe (ignored with files)
    files: list[Path] = field(default_factory=list)  # user OHLCV files instead
    index_file: Path | None = None  # with files: the market index series
    index_ticker: str | None = None  # with files: the ticker that is the market index
    start: str | None = None
    end: str | None = None
    engine: str = "local"  # features: one process; "ray" = Ray Data (slower at this size)
    promote: bool = True  # apply the promotion rule at the end
    force: bool = False  # ignore the recorded state, run every step
    max_folds: int | None = None  # cap walk-forward folds (quick runs); None = config's
    seeds: tuple[int, ...] | None = None  # override the config's seeds
    num_boost_round: int | None = None  # override the config's boosting rounds
    auth: bool = True  # token auth for a cluster this job starts itself
    # fired by the monitor's decay rule: recent-window fit and judgement (lifecycle.recent)
    after_decay: bool = False


@dataclass
class RetrainResult:
    ran: list[str]
    skipped: list[str]
    outputs: dict[str, dict]
    state_file: Path


@dataclass
class EvaluateConfig:
    """What ``stockray evaluate`` runs."""

    data: str = "default"  # "default" (offline store) | "skfolio"
    horizon: int | None = None  # None: the experiment's first horizon
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


class StepFailed(RuntimeError):
    """A retrain step raised; the state keeps every earlier step, so a re-run resumes here."""
