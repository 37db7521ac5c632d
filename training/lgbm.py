"""LightGBM per horizon: regression on the forward log return, or lambdarank on per-date
quantile buckets of it; fit on a purged time-ordered split, scored against naive baselines.

Two objectives share one model class, `LgbmModel`, a `training.model.Model` (``fit(dataset)``
on its ``train`` rows, ``predict(dataset, segment) -> pd.Series`` indexed by (ts, ticker),
``export(dir)`` to a serving bundle):

- ``regression``: L2 on ``fwd_ret_{h}d``; its output is a return forecast.
- ``lambdarank``: one query group per trading date, relevance label = the row's quantile
  bucket (0 .. ``rank_buckets - 1``) of ``fwd_ret_{h}d`` *within its date* (`quantile_buckets`).
  Its output is a cross-sectional score: only the order within a date means anything, so its
  RMSE against returns is not meaningful (IC / RankIC / the long-short backtest are).

Pure logic: no Ray, no MLflow. ``training.tune`` runs it as Ray Tune trials.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from training.evaluate import ic, rank_ic, rmse
from training.model import TEST, TRAIN, Dataset, keyed
from training.splits import segment_fold, time_split


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
    objective: str = "regression"  # or "lambdarank" (grouped by date, see module docstring)
    rank_buckets: int = 5  # lambdarank relevance levels: per-date quantiles of the return

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise ValueError(f"LgbmParams.objective={self.objective!r}; use one of {OBJECTIVES}")
        if self.objective == "lambdarank" and not 2 <= self.rank_buckets <= 31:
            raise ValueError(f"LgbmParams.rank_buckets={self.rank_buckets}: need 2..31 levels "
                             "(LightGBM's default label_gain covers 31)")

    def lgb_params(self) -> dict:
        p = asdict(self)
        p.pop("num_boost_round")
        p.pop("rank_buckets")
        out = {"verbosity": -1, "deterministic": True, **p}
        if self.objective == "lambdarank":
            # NDCG over the whole date (every ticker), not only the top few
            out["lambdarank_truncation_level"] = 10_000
        return out


OBJECTIVES = ("regression", "lambdarank")


def model_matrix(frame: pd.DataFrame, feature_names) -> np.ndarray:
    """Model inputs as float64 holding float32-representable values.

    The served model is ONNX with float32 inputs. Trained on raw float64 values, LightGBM puts
    split thresholds on values that float32 rounds across (measured on the default universe:
    1,504 of 11,909 real rows scored differently by ONNX and LightGBM, max 0.009); trained
    on float32-rounded values, the same rows agree to 5e-8.
    """
    return frame[list(feature_names)].to_numpy(np.float32).astype(np.float64)


def float32_thresholds(booster):
    """The booster with every numerical split threshold ``t`` lowered to the largest float32
    ``<= t``: the same model on float32 inputs, and exactly representable in ONNX.

    ``model_matrix`` makes every input float32-representable, but LightGBM puts thresholds
    between adjacent input values as doubles. Where two inputs are adjacent float32 numbers
    (seen on ``atr_norm_14``), ``float32(t)`` rounds up onto the larger one, and ONNX's
    float32 ``x <= t`` sends that row left where LightGBM sends it right: measured on the
    default universe, 1 of 12,129 rows off by 0.0078 (regression) / 0.063 (lambdarank
    score). For a float32 ``x``, ``x <= t`` iff ``x <= max{f32 <= t}``, so predictions on
    `model_matrix` rows do not change here. Categorical splits are left alone.

    Returns:
        A new ``lightgbm.Booster`` (the input is not modified).
    """
    import lightgbm as lgb

    lines = booster.model_to_string().split("\n")
    thr_at, dec = None, None
    for i, line in enumerate(lines):
        if line.startswith("threshold="):
            thr_at = i
        elif line.startswith("decision_type=") and thr_at is not None:
            dec = [int(v) for v in line.split("=", 1)[1].split()]
            ts = [float(v) for v in lines[thr_at].split("=", 1)[1].split()]
            out = []
            for t, d in zip(ts, dec, strict=True):
                if not d & 1:  # bit 0 = categorical split: its "threshold" is a set index
                    f = np.float32(t)
                    if float(f) > t:
                        f = np.nextafter(f, np.float32(-np.inf))
                    t = float(f)
                out.append(repr(t))
            lines[thr_at] = "threshold=" + " ".join(out)
            thr_at = None
    # tree_sizes are byte offsets of the old text; without them LightGBM parses in order
    text = "\n".join(line for line in lines if not line.startswith("tree_sizes="))
    return lgb.Booster(model_str=text)


def quantile_buckets(values, dates, n_buckets: int) -> np.ndarray:
    """Per-date quantile bucket (0 = lowest) of ``values``: the lambdarank relevance label.

    Ties share the average rank; a date with one row gets the middle bucket.

    Args:
        values: (n_rows,) forward returns.
        dates: (n_rows,) the query key (trading date) of each row.
        n_buckets: relevance levels.

    Returns:
        (n_rows,) int32 in ``0 .. n_buckets - 1``.
    """
    v = pd.Series(np.asarray(values, float))
    pct = v.groupby(np.asarray(dates)).rank(method="average", pct=True).to_numpy()
    # pct is in (0, 1]; ceil(pct * n) - 1 maps it onto 0 .. n - 1 evenly
    b = np.ceil(pct * n_buckets).astype(int) - 1
    return np.clip(b, 0, n_buckets - 1).astype(np.int32)


class LgbmModel:
    """LightGBM on one horizon's target with either objective (see `LgbmParams.objective`).

    Attributes:
        feature_names: inputs, in order.
        horizon: trading days ahead; the target is ``fwd_ret_{horizon}d``.
        params: hyperparameters.
        booster: the fitted ``lightgbm.Booster`` (None before `fit`).
    """

    def __init__(self, feature_names, horizon: int, params: LgbmParams | None = None) -> None:
        self.feature_names = list(feature_names)
        self.horizon = int(horizon)
        self.params = params or LgbmParams()
        self.booster = None

    @property
    def target(self) -> str:
        return f"fwd_ret_{self.horizon}d"

    @property
    def name(self) -> str:
        return "lgbm_reg" if self.params.objective == "regression" else "lgbm_rank"

    def fit(self, dataset: Dataset) -> LgbmModel:
        """Fit on the ``train`` rows of ``dataset`` with a finite target (any row order)."""
        import lightgbm as lgb

        frame, ts_col = dataset.rows(TRAIN), "ts"
        data = frame[np.isfinite(frame[self.target].to_numpy(float))]
        if len(data) < 50:
            raise ValueError(f"LgbmModel(h={self.horizon}, objective={self.params.objective}): "
                             f"{len(data)} labelled rows; need >= 50 — ingest a longer history")
        if self.params.objective == "lambdarank":
            # LightGBM wants each query's rows contiguous: sort by date (stable in ticker order)
            data = data.sort_values(ts_col, kind="stable")
            dates = data[ts_col].to_numpy()
            label = quantile_buckets(data[self.target], dates, self.params.rank_buckets)
            _, group = np.unique(dates, return_counts=True)  # sizes in ascending-date order
        else:
            label, group = data[self.target].to_numpy(float), None
        ds = lgb.Dataset(model_matrix(data, self.feature_names), label, group=group,
                         feature_name=self.feature_names, free_raw_data=True)
        booster = lgb.train(self.params.lgb_params(), ds,
                            num_boost_round=self.params.num_boost_round)
        # the served ONNX model compares float32 thresholds: make LightGBM's the same
        self.booster = float32_thresholds(booster)
        return self

    def predict(self, dataset: Dataset, segment: str | None = TEST) -> pd.Series:
        """Scores of ``segment``'s rows (a return for regression, a rank score else), indexed
        by (ts, ticker) in row order."""
        if self.booster is None:
            raise RuntimeError("LgbmModel.predict called before fit")
        frame = dataset.rows(segment)
        p = self.booster.predict(model_matrix(frame, self.feature_names),
                                 num_threads=self.params.num_threads)
        return keyed(frame, p, f"lgbm_{self.params.objective}")

    def export(self, out_dir: Path, *, model_name: str | None = None,
               model_version: str = "unregistered", extra: dict | None = None) -> Path:
        """A ``kind: "lgbm"`` serving bundle (ONNX + booster text) under ``out_dir``."""
        from training.export import export_bundle

        if self.booster is None:
            raise RuntimeError("LgbmModel.export called before fit")
        family = "lgbm" if self.params.objective == "regression" else "lgbmrank"
        return export_bundle(self.booster, self.feature_names, out_dir,
                             model_name=model_name or f"stockray-{family}-h{self.horizon}",
                             model_version=model_version, horizon=self.horizon, extra=extra)

    def feature_importance(self) -> pd.Series:
        """Total gain per feature."""
        if self.booster is None:
            raise RuntimeError("LgbmModel.feature_importance called before fit")
        return pd.Series(self.booster.feature_importance("gain"), index=self.feature_names,
                         dtype=float)


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
                params: LgbmParams | None = None, valid_frac: float = 0.2,
                segments: dict | None = None) -> HorizonResult:
    """Fit LightGBM for one horizon on a purged time split and score it.

    Args:
        frame: the point-in-time training frame (ticker, ts, features, fwd_ret_* labels).
        feature_names: model inputs, in order.
        horizon: trading days ahead; the target is ``fwd_ret_{horizon}d``.
        params: hyperparameters (defaults if None).
        valid_frac: last fraction of trading dates held out for validation (only without
            ``segments``).
        segments: the experiment config's ``{"train"|"valid"|"test": (start, end)}`` dates
            (`training.segments`); wins over ``valid_frac``. Fits on the train segment,
            scores on the valid segment (both purged, `splits.segment_fold`); test-segment
            rows are never used.

    Returns:
        The booster (as text) and validation metrics of the model and the baselines;
        ``split`` says which split was used (``source``: ``config segments`` or
        ``valid_frac``). With
        ``params.objective == "lambdarank"`` ``val_rmse`` compares rank scores with returns
        and is not meaningful.
    """
    params = params or LgbmParams()
    target = f"fwd_ret_{horizon}d"
    data = frame[frame[target].notna()].reset_index(drop=True)
    if segments is not None:
        fold = segment_fold(data["ts"], segments, horizon=horizon)
        how = {"source": "config segments",
               "segments": {k: [str(x) for x in v] for k, v in segments.items()}}
    else:
        fold = time_split(data["ts"], horizon=horizon, valid_frac=valid_frac)
        how = {"source": "valid_frac", "valid_frac": valid_frac}
    train, valid = data[fold.train_mask(data)], data[fold.valid_mask(data)]
    if len(train) < 100 or len(valid) < 10:
        raise ValueError(f"horizon {horizon}: too little data ({len(train)} train, "
                         f"{len(valid)} valid rows); ingest a longer history")
    model = LgbmModel(feature_names, horizon, params).fit(
        Dataset.of(train, feature_names, target, train=None))
    booster = model.booster
    pred = model.predict(Dataset.of(valid, feature_names, target, test=None)).to_numpy()
    y, d = valid[target].to_numpy(float), valid["ts"].to_numpy()
    metrics = {"val_ic": ic(pred, y, d), "val_rank_ic": rank_ic(pred, y, d),
               "val_rmse": rmse(pred, y), "n_train": float(len(train)),
               "n_valid": float(len(valid))}
    for name, base in baseline_predictions(valid, horizon).items():
        metrics[f"baseline_{name}_rmse"] = rmse(base, y)
        if name != "zero":  # a constant forecast has no correlation with anything
            metrics[f"baseline_{name}_ic"] = ic(base, y, d)
            metrics[f"baseline_{name}_rank_ic"] = rank_ic(base, y, d)
    if params.objective != "lambdarank":  # residuals of rank scores mean nothing
        from training.bundle import residual_calibration  # serving's intervals and P(up)

        metrics.update(residual_calibration(y - pred))
    return HorizonResult(horizon=horizon, booster_text=booster.model_to_string(),
                         feature_names=list(feature_names), metrics=metrics,
                         split={**fold.to_dict(), **how})
