"""LightGBM baseline per horizon: fit on a purged time-ordered split, score against naive
baselines on the same validation rows.

Pure logic: no Ray, no MLflow. ``training.tune`` runs it as Ray Tune trials.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from training.evaluate import ic, rank_ic, rmse
from training.splits import time_split


@dataclass
class LgbmParams:
    """Hyperparameters of the baseline. Conservative on purpose: daily returns are mostly
    noise, so shallow trees with strong leaf minimums overfit least."""

    num_leaves: int = 15
    learning_rate: float = 0.03
    num_boost_round: int = 200  # fixed: early stopping on the validation set would leak it
    min_data_in_leaf: int = 100
    feature_fraction: float = 0.8
    bagging_fraction: float = 0.8
    bagging_freq: int = 1
    lambda_l2: float = 1.0
    seed: int = 0
    num_threads: int = 1  # one per trial: trials run side by side on 2 cores

    def lgb_params(self) -> dict:
        p = asdict(self)
        p.pop("num_boost_round")
        return {"objective": "regression", "verbosity": -1, "deterministic": True, **p}


@dataclass
class HorizonResult:
    """A fitted booster for one horizon and how it did against the baselines."""

    horizon: int
    booster_text: str
    feature_names: list[str]
    metrics: dict[str, float] = field(default_factory=dict)
    split: dict = field(default_factory=dict)


def baseline_predictions(frame: pd.DataFrame, horizon: int) -> dict[str, np.ndarray]:
    """Naive forecasts from information at ts: zero (random walk), momentum, reversal."""
    past = frame[f"ret_{horizon}d"].to_numpy(float) if f"ret_{horizon}d" in frame else \
        frame["ret_1d"].to_numpy(float)
    return {"zero": np.zeros(len(frame)), "momentum": past, "reversal": -past}


def fit_horizon(frame: pd.DataFrame, feature_names: list[str], horizon: int,
                params: LgbmParams | None = None, valid_frac: float = 0.2) -> HorizonResult:
    """Fit LightGBM for one horizon on a purged time split and score it.

    Args:
        frame: the point-in-time training frame (ticker, ts, features, fwd_ret_* labels).
        feature_names: model inputs, in order.
        horizon: trading days ahead; the target is ``fwd_ret_{horizon}d``.
        params: hyperparameters (defaults if None).
        valid_frac: last fraction of trading dates held out for validation.

    Returns:
        The booster (as text) and validation metrics of the model and the baselines.
    """
    import lightgbm as lgb

    params = params or LgbmParams()
    target = f"fwd_ret_{horizon}d"
    data = frame[frame[target].notna()].reset_index(drop=True)
    fold = time_split(data["ts"], horizon=horizon, valid_frac=valid_frac)
    train, valid = data[fold.train_mask(data)], data[fold.valid_mask(data)]
    if len(train) < 100 or len(valid) < 10:
        raise ValueError(f"horizon {horizon}: too little data ({len(train)} train, "
                         f"{len(valid)} valid rows); ingest a longer history")
    dtrain = lgb.Dataset(train[feature_names].to_numpy(float), train[target].to_numpy(float),
                         feature_name=list(feature_names), free_raw_data=True)
    booster = lgb.train(params.lgb_params(), dtrain, num_boost_round=params.num_boost_round)
    pred = booster.predict(valid[feature_names].to_numpy(float), num_threads=params.num_threads)
    y, d = valid[target].to_numpy(float), valid["ts"].to_numpy()
    metrics = {"val_ic": ic(pred, y, d), "val_rank_ic": rank_ic(pred, y, d),
               "val_rmse": rmse(pred, y), "n_train": float(len(train)),
               "n_valid": float(len(valid))}
    for name, base in baseline_predictions(valid, horizon).items():
        metrics[f"baseline_{name}_rmse"] = rmse(base, y)
        if name != "zero":  # a constant forecast has no correlation with anything
            metrics[f"baseline_{name}_ic"] = ic(base, y, d)
            metrics[f"baseline_{name}_rank_ic"] = rank_ic(base, y, d)
    return HorizonResult(horizon=horizon, booster_text=booster.model_to_string(),
                         feature_names=list(feature_names), metrics=metrics,
                         split=fold.to_dict())
