"""Ray Tune for LightGBM (one trial per horizon; ASHA over hyperparameter samples), and the
Tune pieces the sequence search shares (`tune_domain`, `asha_scheduler`,
`raise_failed_trials`).

A function trainable (not Ray Train's LightGBMTrainer): Ray Train's fixed start cost per fit
and per-round reporting would dominate a small booster's training (figures in bench/); one
trial = one horizon = one ``fit_horizon`` call, reported once at the end.
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
                         valid_frac=float(config.get("valid_frac", 0.2)),
                         segments=config.get("segments"))
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
                   experiment: str = "lgbm-horizons",
                   segments: dict | None = None) -> dict[int, HorizonResult]:
    """Fit every horizon as a Ray Tune trial on the connected Ray cluster.

    Args:
        segments: the config's resolved ``{"train"|"valid"|"test": (start, end)}`` dates;
            when given they win over ``valid_frac`` (`lgbm.fit_horizon`).

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
                     "valid_frac": valid_frac,
                     "segments": ({k: list(v) for k, v in segments.items()}
                                  if segments is not None else None)},
        run_config=tune.RunConfig(name=experiment, storage_path=str(storage_path),
                                  verbose=0),
    )
    grid = tuner.fit()
    raise_failed_trials(grid, "training")
    out: dict[int, HorizonResult] = {}
    for res in grid:
        with res.checkpoint.as_directory() as d:
            meta = json.loads(Path(d, "result.json").read_text())
            text = Path(d, "model.txt").read_text()
        out[meta["horizon"]] = HorizonResult(meta["horizon"], text, meta["feature_names"],
                                             meta["metrics"], meta["split"])
    missing = set(horizons) - set(out)
    if missing:
        raise RuntimeError(f"no result for horizons {sorted(missing)}")
    return out


# --- hyperparameter search: ASHA over walk-forward folds inside train + valid ------------------

DOMAIN_KINDS = ("choice", "uniform", "loguniform", "randint")


def tune_domain(kind: str, arg):
    """One Ray Tune domain from a YAML ``{kind: arg}`` (shared by the LightGBM and sequence
    searches): ``choice: [..]``, ``uniform`` / ``loguniform`` / ``randint: [lo, hi]``."""
    from ray import tune

    if kind == "choice":
        return tune.choice(list(arg))
    if kind == "uniform":
        return tune.uniform(float(arg[0]), float(arg[1]))
    if kind == "loguniform":
        return tune.loguniform(float(arg[0]), float(arg[1]))
    if kind == "randint":
        return tune.randint(int(arg[0]), int(arg[1]))
    raise ValueError(f"unknown search-space kind {kind!r} ({', '.join(DOMAIN_KINDS)})")


def asha_scheduler(max_t: int, grace_period: int, reduction_factor: int):
    """ASHA on ``training_iteration`` (one report per fold or epoch), for both searches."""
    from ray.tune.schedulers import ASHAScheduler

    return ASHAScheduler(time_attr="training_iteration", max_t=int(max_t),
                         grace_period=int(grace_period), reduction_factor=int(reduction_factor))


def raise_failed_trials(grid, what: str) -> None:
    """Raise the first failed trial's error (a search never silently drops a trial)."""
    for res in grid:
        if res.error is not None:
            raise RuntimeError(f"{what} trial failed: {res.error}") from res.error


def search_space(spec: dict) -> dict:
    """Ray Tune domains from the YAML spec: ``{name: {choice|uniform|loguniform|randint: v}}``."""
    out = {}
    for name, dom in spec.items():
        if not isinstance(dom, dict) or len(dom) != 1 or next(iter(dom)) not in DOMAIN_KINDS:
            raise ValueError(f"search space {name}: {dom!r}; use one of "
                             f"{{choice: [..]}}, {{uniform: [lo, hi]}}, {{loguniform: [lo, hi]}}, "
                             f"{{randint: [lo, hi]}}")
        if name not in LgbmParams.__dataclass_fields__:
            raise ValueError(f"search space {name}: not a LgbmParams field")
        kind, v = next(iter(dom.items()))
        out[name] = tune_domain(kind, v)
    return out


def tuning_folds(dates, horizon: int, start: str, end: str, max_folds: int):
    """Walk-forward folds inside ``[start, end]`` (train + valid segments): the first half of
    the dates is the first training window, the rest is cut into ``max_folds`` valid slices."""
    from training.splits import trading_dates, walk_forward

    d = trading_dates(dates)
    d = d[(d >= pd.Timestamp(start, tz=d.tz)) & (d <= pd.Timestamp(end, tz=d.tz))]
    first = len(d) // 2
    valid_days = (len(d) - first) // max(1, max_folds) - horizon
    if valid_days < 20:
        raise ValueError(f"tuning range {start}..{end} has {len(d)} dates: too few for "
                         f"{max_folds} folds of >= 20 dates; widen the segments")
    return walk_forward(d, horizon=horizon, train_days=first, valid_days=valid_days,
                        max_folds=max_folds)


def lgbm_search_trainable(config: dict, frame: pd.DataFrame | None = None) -> None:
    """One hyperparameter sample: fit per fold, report the running mean RankIC per fold (ASHA
    decides after each report whether the trial continues)."""
    import numpy as np
    from ray import tune

    from training.evaluate import rank_ic
    from training.lgbm import LgbmModel
    from training.model import Dataset

    base = dict(config["base_params"])
    sample = {k: v for k, v in config.items() if k in LgbmParams.__dataclass_fields__}
    params = LgbmParams(**{**base, **sample, "num_threads": 1})
    h, target = int(config["horizon"]), f"fwd_ret_{int(config['horizon'])}d"
    data = frame[np.isfinite(frame[target].to_numpy(float))].reset_index(drop=True)
    folds = tuning_folds(data["ts"], h, config["start"], config["end"], config["max_folds"])
    scores = []
    for fold in folds:
        train, valid, _ = fold.split(data)
        model = LgbmModel(config["feature_names"], h, params).fit(
            Dataset.of(train, config["feature_names"], target, train=None))
        p = model.predict(Dataset.of(valid, config["feature_names"], target, test=None))
        scores.append(rank_ic(p, valid[target], valid["ts"]))
        tune.report({"rank_ic": float(np.nanmean(scores)), "fold_rank_ic": scores[-1],
                     "folds": len(scores)})


def tune_lgbm(frame: pd.DataFrame, feature_names: list[str], *, horizon: int,
              base_params: LgbmParams, search: dict, num_samples: int, start: str, end: str,
              max_folds: int, grace_period: int, reduction_factor: int,
              storage_path: Path, objective: str = "regression",
              experiment: str = "lgbm-asha", seed: int = 0) -> tuple[LgbmParams, pd.DataFrame]:
    """ASHA search on the connected Ray cluster; one 1-CPU trial per sample.

    Args:
        start, end: the train + valid segments; the test segment is never touched.
        search: the YAML search-space spec (`search_space`).

    Returns:
        (best params, one row per trial with its sampled values and final ``rank_ic``).
    """
    from ray import tune

    base = {**asdict(base_params), "objective": objective}
    space = {**search_space(search), "base_params": base, "horizon": horizon,
             "feature_names": list(feature_names), "start": start, "end": end,
             "max_folds": max_folds}
    trainable = tune.with_resources(tune.with_parameters(lgbm_search_trainable, frame=frame),
                                    {"cpu": 1})
    sched = asha_scheduler(max_folds, grace_period, reduction_factor)
    tuner = tune.Tuner(
        trainable, param_space=space,
        tune_config=tune.TuneConfig(metric="rank_ic", mode="max", scheduler=sched,
                                    num_samples=num_samples,
                                    search_alg=_seeded_search(seed)),
        run_config=tune.RunConfig(name=experiment, storage_path=str(storage_path), verbose=0),
    )
    grid = tuner.fit()
    raise_failed_trials(grid, "tuning")
    rows = []
    for res in grid:
        cfg = {k: res.config[k] for k in search}
        rows.append({**cfg, "rank_ic": res.metrics.get("rank_ic"),
                     "folds": res.metrics.get("folds")})
    best = grid.get_best_result(metric="rank_ic", mode="max", scope="last")
    best_params = LgbmParams(**{**base, **{k: best.config[k] for k in search}})
    return best_params, pd.DataFrame(rows)


def _seeded_search(seed: int):
    from ray.tune.search.basic_variant import BasicVariantGenerator

    return BasicVariantGenerator(random_state=seed)
