"""Experiment configs (``configs/*.yaml``) as typed dataclasses, validated once at load: the
single source of truth for what `stockray train`, `stockray evaluate`, `stockray retrain` and
`stockray promote` run, and for their CLI defaults.

Two kinds, told apart by the file's ``kind`` key:

- ``kind: lgbm`` (`LgbmExperiment`, ``configs/lgbm.yaml``): LightGBM families, horizons,
  walk-forward layout, the Tune search, the promotion rule;
- ``kind: sequence`` (`SequenceExperiment`, ``configs/sequence.yaml``): the LSTM / Transformer
  defaults, their search and their walk-forward overrides.

Both carry segments (`training.segments`): explicit inclusive ``[start, end]`` date pairs, or
``fractions`` of the data's own trading dates, resolved per dataset (`.resolve(dates, gap)`),
so any date range works. Errors name the file and the key at fault.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from training.lgbm import LgbmParams
from training.registry import FAMILIES
from training.segments import SegmentFractions, Segments, parse_segments
from training.walkforward import SEQUENCE_MODELS, WalkForwardConfig

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
DEFAULT_CONFIG = CONFIG_DIR / "lgbm.yaml"
DEFAULT_SEQUENCE_CONFIG = CONFIG_DIR / "sequence.yaml"
#: experiment kinds and the loader of each (configs without ``kind`` are not experiments)
KINDS = ("lgbm", "sequence")
# SequenceConfig fields the walk-forward sets itself (per candidate, seed and horizon)
_SEQUENCE_FIXED = ("model", "seed", "horizons")


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
    # After a decay retrain (`stockray retrain --after-decay`), `training.lifecycle.recent`:
    decay_promotion: str = "recent_window"
    """recent_window: judge on the latest sessions after the cut-off | walkforward: as above."""
    decay_window: int = 20
    """Sessions of the recent window (after the cut-off and an h-session purge)."""
    decay_margin: float = 0.02
    """Challenger RankIC must beat the champion's on the window by this."""
    decay_floor: float = 0.02
    """... and be at least this."""
    decay_min_sessions: int = 10
    """Fewest judged sessions (fewer: refuse, wait for data)."""
    decay_train_sessions: int = 60
    """Sessions the decay retrain fits on (0: all history): mostly the new regime."""
    decay_valid_sessions: int = 10
    decay_beat_baselines: bool = False
    """Also require beating the best naive baseline (momentum / reversal) on the window."""

    def __post_init__(self) -> None:
        if self.decay_promotion not in ("recent_window", "walkforward"):
            raise ValueError(f"decay_promotion must be recent_window or walkforward, not "
                             f"{self.decay_promotion!r}")


@dataclass
class FeatureInputs:
    """Opt-in model inputs beyond the price features (``features:`` in a config)."""

    text: bool = False
    """Also train on the text features (Feast service ``stockray_text_v1``), joined point in
    time and filled by ``features.text.fill`` (`training.text_inputs`); the bundle then asks
    serving to read that service."""


@dataclass
class LgbmExperiment:
    """One ``kind: lgbm`` config."""

    segments: Segments | SegmentFractions  # `training.segments.resolve_segments` per data
    horizons: list[int] = field(default_factory=lambda: [5])
    families: list[str] = field(default_factory=lambda: ["lgbm", "lgbmrank"])
    params: LgbmParams = field(default_factory=LgbmParams)
    walkforward: WalkForwardConfig = field(default_factory=WalkForwardConfig)
    tune: TuneConfig = field(default_factory=TuneConfig)
    lifecycle: LifecycleConfig = field(default_factory=LifecycleConfig)
    features: FeatureInputs = field(default_factory=FeatureInputs)
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
        if not self.features.text:  # default inputs: the dict (and config hashes) as before
            d.pop("features")
        return d


@dataclass
class SequenceTune:
    """ASHA over `SequenceConfig` (`training.sequence.tune_sequence`)."""

    num_samples: int = 4
    metric: str = "val_loss"
    grace_period: int = 1
    reduction_factor: int = 2
    cpus_per_trial: float = 1
    max_concurrent: int | None = None


@dataclass
class SequenceExperiment:
    """One ``kind: sequence`` config.

    Attributes:
        segments: explicit segments of `stockray train --sequence` and the Tune search.
        model: the `training.sequence.SequenceConfig` every trial starts from.
        search_space: SequenceConfig field -> Tune domain spec.
        tune: the ASHA settings.
        walkforward: overrides of ``model`` for the walk-forward candidates ``lstm`` /
            ``transformer`` (`walkforward_settings`); ``samples_per_epoch`` bounds each epoch.
    """

    segments: Segments | SegmentFractions  # resolved on the data (`training.segments`)
    model: Any  # training.sequence.SequenceConfig (imported lazily: it costs a torch import)
    search_space: dict = field(default_factory=dict)
    tune: SequenceTune = field(default_factory=SequenceTune)
    walkforward: dict = field(default_factory=dict)
    source: str = ""
    model_keys: tuple[str, ...] = ()
    """The ``model`` keys the file sets (the walk-forward overrides only those)."""

    def spec(self) -> dict[str, Any]:
        """``{"segments", "model", "search_space", "tune"}`` as the sequence trainers take it."""
        return {"segments": self.segments.to_dict(), "model": self.model,
                "search_space": dict(self.search_space), "tune": asdict(self.tune)}

    def walkforward_settings(self) -> dict:
        """`WalkForwardConfig` fields of the sequence candidates: ``model`` overridden by
        ``walkforward``; ``samples_per_epoch`` there becomes ``sequence_samples_per_epoch``;
        ``model``, ``seed`` and ``horizons`` are dropped (the walk-forward sets them per
        candidate, seed and horizon).

        Returns:
            ``{"sequence": {...}, "sequence_samples_per_epoch": int | None}``.
        """
        wf = dict(self.walkforward)
        samples = wf.pop("samples_per_epoch", None)
        given = {k: getattr(self.model, k) for k in self.model_keys}
        seq = {k: v for k, v in {**given, **wf}.items() if k not in _SEQUENCE_FIXED}
        return {"sequence": seq, "sequence_samples_per_epoch": samples}


def _build(cls, raw: dict | None, where: str):
    raw = dict(raw or {})
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; known: {sorted(known)}")
    try:
        return cls(**raw)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{where}: {e}") from e


def _read(path: Path, kind: str) -> dict:
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ValueError(f"{path}: not valid YAML: {e}") from e
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: an experiment config is a mapping, "  # noqa: TRY004
                         f"got {type(raw).__name__}")
    if raw.get("kind") != kind:
        raise ValueError(f"{path}: kind={raw.get('kind')!r}, this loader reads kind: {kind}")
    return raw


def _segments(path: Path, raw: dict) -> Segments | SegmentFractions:
    return parse_segments(raw.get("segments"), f"{path}: segments")


def load_experiment(path: str | Path = DEFAULT_CONFIG) -> LgbmExperiment:
    """Read and validate a ``kind: lgbm`` config.

    Raises:
        ValueError: wrong kind, unknown keys, bad segments or families (message names them).
    """
    path = Path(path)
    raw = _read(path, "lgbm")
    known = {"kind", *(f.name for f in fields(LgbmExperiment))} - {"source"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ValueError(f"{path}: unknown key(s) {unknown}; known: {sorted(known)}")
    segments = _segments(path, raw)
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
        features=_build(FeatureInputs, raw.get("features"), f"{path}: features"),
        source=str(path),
    )


def load_sequence_experiment(path: str | Path = DEFAULT_SEQUENCE_CONFIG) -> SequenceExperiment:
    """Read and validate a ``kind: sequence`` config.

    Raises:
        ValueError: wrong kind, a missing section, unknown keys, bad segments, a search-space
            key that is no `SequenceConfig` field, or walk-forward overrides that do not make
            a valid candidate (message names the file and key).
    """
    from training.sequence import SequenceConfig

    path = Path(path)
    raw = _read(path, "sequence")
    for key in ("segments", "model", "search_space", "tune"):
        if key not in raw:
            raise ValueError(f"{path}: missing section {key!r}")
    known = {"kind", *(f.name for f in fields(SequenceExperiment))} - {"source", "model_keys"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ValueError(f"{path}: unknown key(s) {unknown}; known: {sorted(known)}")
    segments = _segments(path, raw)
    try:
        model = SequenceConfig.from_dict(raw["model"] or {})
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path}: model: {e}") from e
    space = dict(raw["search_space"] or {})
    bad = sorted(set(space) - {f.name for f in fields(SequenceConfig)})
    if bad:
        raise ValueError(f"{path}: search_space keys {bad} are not SequenceConfig fields")
    exp = SequenceExperiment(segments=segments, model=model, search_space=space,
                             tune=_build(SequenceTune, raw["tune"], f"{path}: tune"),
                             walkforward=dict(raw.get("walkforward") or {}), source=str(path),
                             model_keys=tuple(raw["model"] or {}))
    try:
        settings = exp.walkforward_settings()
        check = WalkForwardConfig(**settings)
        for m in SEQUENCE_MODELS:
            check.sequence_config(m, 0)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path}: walkforward section: {e}") from e
    return exp


def sequence_walkforward_settings(path: str | Path | None = None) -> dict:
    """`SequenceExperiment.walkforward_settings` of ``path`` (default
    ``configs/sequence.yaml``)."""
    return load_sequence_experiment(path or DEFAULT_SEQUENCE_CONFIG).walkforward_settings()


def load_config(path: str | Path) -> LgbmExperiment | SequenceExperiment:
    """Any experiment config, by its ``kind``."""
    path = Path(path)
    kind = (yaml.safe_load(path.read_text()) or {}).get("kind")
    if kind == "lgbm":
        return load_experiment(path)
    if kind == "sequence":
        return load_sequence_experiment(path)
    raise ValueError(f"{path}: kind={kind!r}; experiment configs have kind in {list(KINDS)}")
