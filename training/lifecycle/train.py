"""The training jobs of ``stockray train``: LightGBM per horizon (Ray Tune trials) -> MLflow
registry (alias ``champion`` for a name's first version, ``challenger`` after that;
`stockray promote` decides) -> ONNX bundles; or, with a sequence model, one Ray Train run on
the explicit segments of the sequence experiment for every horizon at once, validation and
test metrics next to the zero / momentum / reversal baselines, and one registered version
per horizon (``stockray-lstm-h5`` ...). Both need a connected Ray cluster.

Hyperparameters and date segments come from the experiment configs (`training.config`):
``configs/lgbm.yaml``'s ``params`` / ``segments`` (LightGBM fits on the train segment and is
validated on the valid segment, purged; the test segment stays untouched, as in ``stockray
retrain``) and ``configs/sequence.yaml``'s ``segments`` / ``model``.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from features.coverage import FeatureSelection, summarize_names
from features.pipeline import FEATURE_NAMES, HORIZONS
from features.pipeline_metrics import record_training
from features.settings import Settings
from training.config import (
    DEFAULT_CONFIG,
    DEFAULT_SEQUENCE_CONFIG,
    load_experiment,
    load_sequence_experiment,
)
from training.data import load_training_frame
from training.lgbm import LgbmParams
from training.registry import (
    RegisteredVersion,
    ensure_experiment,
    register_horizon,
    register_sequence,
)
from training.text_inputs import model_inputs
from training.tune import train_horizons


@dataclass
class TrainConfig:
    horizons: list[int] = field(default_factory=lambda: list(HORIZONS))
    """Served horizons, one model each."""
    valid_frac: float | None = None
    """None: the config's ``segments``. A fraction instead holds out that last share of
    trading dates (after a purge gap of h dates) and ignores the config's segments."""
    experiment: str = "stockray-lgbm"
    params: LgbmParams | None = None
    """None: the ``params`` of ``config_path``."""
    config_path: Path = DEFAULT_CONFIG


@dataclass
class TrainResult:
    registered: dict[int, RegisteredVersion]
    metrics: dict[int, dict[str, float]]
    features: FeatureSelection | None = None  # the feature set (kept / dropped with reasons)
    split: dict | None = None  # which split: {"source": "config segments", "segments": ...}
    feature_set: dict | None = None  # as stored in the bundles (services/fills with text)


def train_lgbm(cfg: TrainConfig, settings: Settings) -> TrainResult:
    """Fit, register and export one LightGBM per horizon on the offline store."""
    settings = settings.resolved()
    exp = load_experiment(cfg.config_path)
    params = cfg.params or exp.params
    frame = load_training_frame(settings.offline_dir)
    # configs with features: {text: true} add the filled text inputs (training.text_inputs)
    frame, fs, feature_set = model_inputs(frame, settings.offline_dir, exp.features.text)
    if cfg.valid_frac is None:
        seg = {k: list(v) for k, v in
               exp.segments.resolve(frame["ts"], gap=max(cfg.horizons)).items()}
        split = {"source": "config segments", "config": str(cfg.config_path), "segments": seg}
        kw = {"segments": seg}
    else:
        split = {"source": "valid_frac", "valid_frac": cfg.valid_frac}
        kw = {"valid_frac": cfg.valid_frac}
    t0 = time.perf_counter()
    results = train_horizons(frame, fs.kept, cfg.horizons, settings.ray_dir / "results",
                             params=params, **kw)
    record_training(time.perf_counter() - t0, "lgbm")
    exp_id = ensure_experiment(settings.tracking_uri, settings.artifact_uri, cfg.experiment)
    registered = {}
    for h, res in sorted(results.items()):
        registered[h] = register_horizon(res, tracking_uri=settings.tracking_uri,
                                         experiment_id=exp_id,
                                         bundle_root=settings.models_dir,
                                         params=asdict(params),
                                         feature_set=feature_set)
    return TrainResult(registered=registered, metrics={h: r.metrics for h, r in results.items()},
                       features=fs, split=split, feature_set=feature_set)


def split_text(split: dict | None) -> str:
    """How the validation rows were cut, for the terminal."""
    if split and split.get("source") == "config segments":
        seg = split["segments"]
        return (f"config segments: train {seg['train'][0]}..{seg['train'][1]}, valid "
                f"{seg['valid'][0]}..{seg['valid'][1]} (purged), test {seg['test'][0]}.."
                f"{seg['test'][1]} untouched")
    frac = (split or {}).get("valid_frac", 0.2)
    return f"last {frac:.0%} of dates, purged"


def describe(result: TrainResult) -> str:
    """A table of validation metrics: model vs the naive baselines, per horizon."""
    head = (f"  {'h':>3} {'model':<20} {'IC':>8} {'RankIC':>8} {'RMSE':>9} | "
            f"{'mom IC':>8} {'rev IC':>8} {'zero RMSE':>9}")
    lines = []
    if result.features is not None and result.features.dropped:
        fs = result.features
        lines.append(f"features: {len(fs.kept)} used, {len(fs.dropped)} dropped as missing in "
                     f"this universe: {summarize_names(sorted(fs.dropped))} (model card)")
    fset = result.feature_set or {}
    if fset.get("services"):  # opt-in inputs (text): what serving will read, how much had text
        cov = fset.get("text_coverage", {})
        lines.append(f"opt-in inputs: services {fset['services']}, fill rules {fset['fills']}; "
                     f"{cov.get('rows_with_text', 0)} of {cov.get('rows', 0)} training-frame "
                     "rows had text (the rest: the fill rule)")
    lines += [f"validation ({split_text(result.split)}), model vs naive baselines:", head]
    for h, m in sorted(result.metrics.items()):
        r = result.registered[h]
        lines.append(f"  {h:>3} {r.name + ' v' + r.version:<20} {m['val_ic']:>8.4f} "
                     f"{m['val_rank_ic']:>8.4f} {m['val_rmse']:>9.5f} | "
                     f"{m['baseline_momentum_ic']:>8.4f} {m['baseline_reversal_ic']:>8.4f} "
                     f"{m['baseline_zero_rmse']:>9.5f}")
    return "\n".join(lines)


@dataclass
class SequenceTrainConfig:
    model: str = "lstm"
    """``lstm`` or ``transformer`` (overrides the config's ``model.model``)."""
    horizons: list[int] = field(default_factory=lambda: list(HORIZONS))
    """Heads to register (the net is trained on the config's ``model.horizons``)."""
    config_path: Path = DEFAULT_SEQUENCE_CONFIG
    """Segments (train/valid/test dates) and the ``SequenceConfig`` defaults."""
    epochs: int | None = None
    """Override the config's epochs (quick runs)."""
    experiment: str = "stockray-sequence"
    cpus_per_worker: int = 2
    """One Ray Train worker with 2 CPUs: DDP between two 1-CPU workers was slower on 2 cores
    (bench/training.py)."""


@dataclass
class SequenceTrainResult:
    registered: dict[int, RegisteredVersion]
    metrics: dict[int, dict[str, float]]
    onnx_parity_max_abs: float


def train_sequence(cfg: SequenceTrainConfig, settings: Settings) -> SequenceTrainResult:
    """Train, evaluate and register a sequence net (needs a connected Ray cluster)."""
    from training.sequence import fit_sequence_ray

    settings = settings.resolved()
    exp = load_sequence_experiment(cfg.config_path)
    net_cfg = replace(exp.model, model=cfg.model,
                      **({"epochs": cfg.epochs} if cfg.epochs is not None else {}))
    unknown = [h for h in cfg.horizons if h not in net_cfg.horizons]
    if unknown:
        raise ValueError(f"horizons {unknown} are not heads of the net ({net_cfg.horizons} in "
                         f"{cfg.config_path}); pick among those")
    frame = load_training_frame(settings.offline_dir)
    segments = {k: list(v) for k, v in exp.segments.resolve(frame["ts"]).items()}
    t0 = time.perf_counter()
    result = fit_sequence_ray(frame, FEATURE_NAMES, net_cfg, segments,
                              settings.ray_dir / "results", name=f"sequence-{cfg.model}",
                              cpus_per_worker=cfg.cpus_per_worker)
    record_training(time.perf_counter() - t0, cfg.model)
    exp_id = ensure_experiment(settings.tracking_uri, settings.artifact_uri, cfg.experiment)
    registered = register_sequence(result, cfg.horizons, tracking_uri=settings.tracking_uri,
                                   experiment_id=exp_id, bundle_root=settings.models_dir,
                                   params={"config": str(cfg.config_path)})
    metrics = {h: result.metrics[h] for h in cfg.horizons}
    return SequenceTrainResult(registered=registered, metrics=metrics,
                               onnx_parity_max_abs=max(m["onnx_parity_max_abs"]
                                                       for m in metrics.values()))


def describe_sequence(result: SequenceTrainResult) -> str:
    """Validation and test metrics per horizon, the net vs the naive baselines."""
    head = (f"  {'h':>3} {'model':<26} {'val IC':>8} {'val RIC':>8} {'test IC':>8} "
            f"{'test RIC':>8} | {'mom IC':>8} {'rev IC':>8} {'zero RMSE':>9} {'RMSE':>9}")
    lines = ["sequence net, explicit segments (valid / test), vs naive baselines on valid:",
             head]
    nan = float("nan")
    for h, m in sorted(result.metrics.items()):
        r = result.registered[h]
        g = m.get
        lines.append(
            f"  {h:>3} {r.name + ' v' + r.version + ' ' + r.alias:<26} "
            f"{g('val_ic', nan):>8.4f} {g('val_rank_ic', nan):>8.4f} "
            f"{g('test_ic', nan):>8.4f} {g('test_rank_ic', nan):>8.4f} | "
            f"{g('baseline_momentum_ic', nan):>8.4f} {g('baseline_reversal_ic', nan):>8.4f} "
            f"{g('baseline_zero_rmse', nan):>9.5f} {g('val_rmse', nan):>9.5f}")
    lines.append(f"ONNX parity vs torch eager (max abs): {result.onnx_parity_max_abs:.2e}")
    return "\n".join(lines)
