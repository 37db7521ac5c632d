"""Training frame -> LightGBM per horizon (Ray Tune trials) -> MLflow registry (alias
``champion`` for a name's first version, ``challenger`` after that; `stockray promote` decides)
-> ONNX bundles: ``python -m ray_apps.train``. Needs a connected Ray cluster."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from features.pipeline import FEATURE_NAMES, HORIZONS
from features.settings import Settings
from training.data import load_training_frame
from training.lgbm import LgbmParams
from training.registry import RegisteredVersion, ensure_experiment, register_horizon
from training.tune import train_horizons


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
    results = train_horizons(frame, FEATURE_NAMES, cfg.horizons, settings.ray_dir / "results",
                             params=cfg.params, valid_frac=cfg.valid_frac)
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


if __name__ == "__main__":
    import ray

    ray.init()
    print(describe(main(TrainConfig(), Settings())))
