"""Experiment configs (``configs/*.yaml``) as dataclasses: the single source of truth for what
`stockray evaluate`, `stockray retrain` and `stockray promote` run.

Only ``kind: lgbm`` files are read here; other kinds belong to other model families.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import yaml

from training.lgbm import LgbmParams
from training.registry import FAMILIES
from training.segments import SegmentFractions, Segments, parse_segments
from training.walkforward import WalkForwardConfig

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
DEFAULT_CONFIG = CONFIG_DIR / "lgbm.yaml"


@dataclass
class TuneConfig:
    """Ray Tune ASHA search over LightGBM hyperparameters."""

    num_samples: int = 0
    """Trials; 0 = no search."""
    max_folds: int = 4
    """Walk-forward folds inside the train+valid segments; one report per fold."""
    grace_period: int = 2
    reduction_factor: int = 2
    objective: str = "regression"
    search_space: dict = field(default_factory=dict)
    """param -> {choice: [...]} | {uniform: [lo, hi]} | {loguniform: [lo, hi]} | {randint: ...}"""


@dataclass
class LifecycleConfig:
    promotion_margin: float = 0.005
    """Challenger's mean walk-forward RankIC must exceed the champion's by this much."""
    min_seeds: int = 3
    """Seeds the challenger must have been evaluated on."""


@dataclass
class LgbmExperiment:
    """One ``configs/lgbm*.yaml``."""

    segments: Segments | SegmentFractions  # `training.segments.resolve_segments` per data
    horizons: list[int] = field(default_factory=lambda: [5])
    families: list[str] = field(default_factory=lambda: ["lgbm", "lgbmrank"])
    params: LgbmParams = field(default_factory=LgbmParams)
    walkforward: WalkForwardConfig = field(default_factory=WalkForwardConfig)
    tune: TuneConfig = field(default_factory=TuneConfig)
    lifecycle: LifecycleConfig = field(default_factory=LifecycleConfig)
    source: str = ""

    def walkforward_for(self, horizon: int, **overrides) -> WalkForwardConfig:
        """Walk-forward config for one horizon with this experiment's parameters."""
        d = {**asdict(self.walkforward), "horizon": horizon, "params": self.params, **overrides}
        d["seeds"] = tuple(d["seeds"])
        return WalkForwardConfig(**d)

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("source")
        d["segments"] = self.segments.to_dict()
        return d


def _build(cls, raw: dict | None, where: str):
    raw = dict(raw or {})
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; known: {sorted(known)}")
    return cls(**raw)


def load_experiment(path: str | Path = DEFAULT_CONFIG) -> LgbmExperiment:
    """Read and validate a ``kind: lgbm`` config.

    Raises:
        ValueError: wrong kind, unknown keys, bad segments or families (message names them).
    """
    path = Path(path)
    raw = yaml.safe_load(path.read_text()) or {}
    if raw.get("kind") != "lgbm":
        raise ValueError(f"{path}: kind={raw.get('kind')!r}, this loader reads kind: lgbm")
    segments = parse_segments(raw.get("segments"), f"{path}: segments")
    families = list(raw.get("families", ["lgbm", "lgbmrank"]))
    bad = [f for f in families if f not in FAMILIES]
    if bad:
        raise ValueError(f"{path}: unknown families {bad}; known {sorted(FAMILIES)}")
    wf = dict(raw.get("walkforward") or {})
    if "seeds" in wf:
        wf["seeds"] = tuple(wf["seeds"])
    return LgbmExperiment(
        segments=segments,
        horizons=[int(h) for h in raw.get("horizons", [5])],
        families=families,
        params=_build(LgbmParams, raw.get("params"), f"{path}: params"),
        walkforward=_build(WalkForwardConfig, wf, f"{path}: walkforward"),
        tune=_build(TuneConfig, raw.get("tune"), f"{path}: tune"),
        lifecycle=_build(LifecycleConfig, raw.get("lifecycle"), f"{path}: lifecycle"),
        source=str(path),
    )
