"""Training frame -> LightGBM per horizon (Ray Tune trials) -> MLflow registry (alias
``champion`` for a name's first version, ``challenger`` after that; `stockray promote` decides)
-> ONNX bundles: ``python -m ray_apps.train``. Needs a connected Ray cluster.

``main_sequence`` (``stockray train --sequence lstm|transformer``) does the same for a sequence
net: the explicit segments of ``configs/sequence.yaml``, one Ray Train run for every horizon
at once, validation and test metrics next to the zero / momentum / reversal baselines, and one
registered version per horizon (``stockray-lstm-h5`` ...)."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from features.pipeline import FEATURE_NAMES, HORIZONS
from features.pipeline_metrics import record_training
from features.settings import Settings
from training.data import load_training_frame
from training.lgbm import LgbmParams
from training.registry import (
    RegisteredVersion,
    ensure_experiment,
    register_horizon,
    register_sequence,
)
from training.tune import train_horizons

DEFAULT_SEQUENCE_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "sequence.yaml"


@dataclass
class TrainConfig:
    horizons: list[int] = field(default_factory=lambda: list(HORIZONS))
    valid_frac: float = 0.2  # last 20% of trading dates, after a purge gap of h dates
    experiment: str = "stockray-lgbm"
    params: LgbmParams = field(default_factory=LgbmParams)


@dataclass
class TrainResult:
    registered: dict[int, RegisteredVersion]
    metrics: dict[int, dict[str, float]]


def main(cfg: TrainConfig, settings: Settings) -> TrainResult:
    settings = settings.resolved()
    frame = load_training_frame(settings.offline_dir)
    t0 = time.perf_counter()
    results = train_horizons(frame, FEATURE_NAMES, cfg.horizons, settings.ray_dir / "results",
                             params=cfg.params, valid_frac=cfg.valid_frac)
    record_training(time.perf_counter() - t0, "lgbm")
    exp_id = ensure_experiment(settings.tracking_uri, settings.artifact_uri, cfg.experiment)
    registered = {}
    for h, res in sorted(results.items()):
        registered[h] = register_horizon(res, tracking_uri=settings.tracking_uri,
                                         experiment_id=exp_id,
                                         bundle_root=settings.models_dir,
                                         params=asdict(cfg.params))
    return TrainResult(registered=registered, metrics={h: r.metrics for h, r in results.items()})


def describe(result: TrainResult) -> str:
    """A table of validation metrics: model vs the naive baselines, per horizon."""
    head = (f"  {'h':>3} {'model':<20} {'IC':>8} {'RankIC':>8} {'RMSE':>9} | "
            f"{'mom IC':>8} {'rev IC':>8} {'zero RMSE':>9}")
    lines = ["validation (last 20% of dates, purged), model vs naive baselines:", head]
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
    """One Ray Train worker with 2 CPUs beat two 1-CPU DDP workers here (STACK.md)."""


@dataclass
class SequenceTrainResult:
    registered: dict[int, RegisteredVersion]
    metrics: dict[int, dict[str, float]]
    onnx_parity_max_abs: float


def main_sequence(cfg: SequenceTrainConfig, settings: Settings) -> SequenceTrainResult:
    """Train, evaluate and register a sequence net (needs a connected Ray cluster)."""
    from training.sequence import fit_sequence_ray, load_sequence_yaml

    settings = settings.resolved()
    spec = load_sequence_yaml(cfg.config_path)
    net_cfg = replace(spec["model"], model=cfg.model,
                      **({"epochs": cfg.epochs} if cfg.epochs is not None else {}))
    unknown = [h for h in cfg.horizons if h not in net_cfg.horizons]
    if unknown:
        raise ValueError(f"horizons {unknown} are not heads of the net ({net_cfg.horizons} in "
                         f"{cfg.config_path}); pick among those")
    frame = load_training_frame(settings.offline_dir)
    t0 = time.perf_counter()
    result = fit_sequence_ray(frame, FEATURE_NAMES, net_cfg, spec["segments"],
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
    for h, m in sorted(result.metrics.items()):
        r = result.registered[h]
        g = m.get
        lines.append(
            f"  {h:>3} {r.name + ' v' + r.version + ' ' + r.alias:<26} "
            f"{g('val_ic', float('nan')):>8.4f} {g('val_rank_ic', float('nan')):>8.4f} "
            f"{g('test_ic', float('nan')):>8.4f} {g('test_rank_ic', float('nan')):>8.4f} | "
            f"{g('baseline_momentum_ic', float('nan')):>8.4f} "
            f"{g('baseline_reversal_ic', float('nan')):>8.4f} "
            f"{g('baseline_zero_rmse', float('nan')):>9.5f} {g('val_rmse', float('nan')):>9.5f}")
    lines.append(f"ONNX parity vs torch eager (max abs): {result.onnx_parity_max_abs:.2e}")
    return "\n".join(lines)


if __name__ == "__main__":
    import ray

    ray.init()
    print(describe(main(TrainConfig(), Settings())))
