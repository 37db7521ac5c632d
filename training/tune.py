"""Ray Tune wrappers: one trial per horizon (and, later, per hyperparameter sample).

A function trainable (not Ray Train's LightGBMTrainer) because Ray Train costs ~10-12 s of fixed
overhead per fit on this 2-core machine and reporting every boosting round ~1.9 s per round
(STACK.md); one trial = one horizon = one ``fit_horizon`` call, reported once at the end.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import asdict
from pathlib import Path

import pandas as pd

from training.lgbm import HorizonResult, LgbmParams, fit_horizon


def horizon_trainable(config: dict, frame: pd.DataFrame | None = None) -> None:
    """Tune function trainable: fit one horizon and report metrics with a checkpoint."""
    from ray import tune

    params = LgbmParams(**config.get("params", {}))
    result = fit_horizon(frame, config["feature_names"], int(config["horizon"]), params,
                         valid_frac=float(config.get("valid_frac", 0.2)))
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "model.txt").write_text(result.booster_text)
        Path(tmp, "result.json").write_text(json.dumps(
            {"horizon": result.horizon, "feature_names": result.feature_names,
             "metrics": result.metrics, "split": result.split}))
        tune.report(dict(result.metrics, horizon=result.horizon),
                    checkpoint=tune.Checkpoint.from_directory(tmp))


def train_horizons(frame: pd.DataFrame, feature_names: list[str], horizons: list[int],
                   storage_path: Path, params: LgbmParams | None = None,
                   valid_frac: float = 0.2, cpus_per_trial: float = 1.0,
                   experiment: str = "lgbm-horizons") -> dict[int, HorizonResult]:
    """Fit every horizon as a Ray Tune trial on the connected Ray cluster.

    Returns:
        horizon -> HorizonResult, read back from each trial's checkpoint.

    Raises:
        RuntimeError: a trial failed (its error is included).
    """
    from ray import tune

    params = params or LgbmParams()
    trainable = tune.with_resources(tune.with_parameters(horizon_trainable, frame=frame),
                                    {"cpu": cpus_per_trial})
    tuner = tune.Tuner(
        trainable,
        param_space={"horizon": tune.grid_search(list(horizons)),
                     "feature_names": list(feature_names), "params": asdict(params),
                     "valid_frac": valid_frac},
        run_config=tune.RunConfig(name=experiment, storage_path=str(storage_path),
                                  verbose=0),
    )
    grid = tuner.fit()
    out: dict[int, HorizonResult] = {}
    for res in grid:
        if res.error is not None:
            raise RuntimeError(f"training trial failed: {res.error}") from res.error
        with res.checkpoint.as_directory() as d:
            meta = json.loads(Path(d, "result.json").read_text())
            text = Path(d, "model.txt").read_text()
        out[meta["horizon"]] = HorizonResult(meta["horizon"], text, meta["feature_names"],
                                             meta["metrics"], meta["split"])
    missing = set(horizons) - set(out)
    if missing:
        raise RuntimeError(f"no result for horizons {sorted(missing)}")
    return out
