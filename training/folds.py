"""One walk-forward fold: every candidate fitted through `training.model.Model` and its test rows
predicted, plus the plan every fold job shares (folds, features, baselines).

`fold_predictions` is the unit of work (a Ray task per fold and seed in ``ray_apps``); it only
builds models and calls ``fit(dataset)`` / ``predict(dataset, "test")`` on them:

- ``lgbm_reg`` / ``lgbm_rank`` (`training.lgbm.LgbmModel`) fit the fold's purged train rows;
- ``regime_ensemble`` (`training.ensemble.RegimeEnsemble`) stacks those two: its dataset's
  features are their predictions, fitted on the fold's **validation** rows;
- ``lstm`` / ``transformer`` (`training.sequence.SequenceModel`) fit the same train rows with
  the plain torch loop, sharing windows across seeds (``window_cache``).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from training.baselines import LinearBaseline, baseline_predictions
from training.ensemble import RegimeEnsemble, stack_members
from training.lgbm import LgbmModel, LgbmParams
from training.model import Dataset
from training.splits import walk_forward

LGBM_MODELS = ("lgbm_reg", "lgbm_rank", "regime_ensemble")
#: Candidates whose output is a rank score with no return scale (reported by score decile).
SCORE_MODELS = ("lgbm_rank", "regime_ensemble")
SEQUENCE_MODELS = ("lstm", "transformer")
# every walk-forward candidate, in report order
MODEL_NAMES = (*LGBM_MODELS, *SEQUENCE_MODELS)
LINEAR_NAME = "linear"
# past-return feature columns the momentum / reversal baselines read (lookback -> column)
PAST_RETURN_COLS = {1: "ret_1d", 5: "ret_5d", 20: "ret_20d"}


def usable_features(frame: pd.DataFrame, feature_names) -> list[str]:
    """Features that carry information here: drop all-NaN and constant columns (e.g.
    ``volume_z_20`` on close-only data)."""
    keep = []
    for f in feature_names:
        v = frame[f].to_numpy(float)
        v = v[np.isfinite(v)]
        if len(v) and np.ptp(v) > 0:
            keep.append(f)
    return keep


def _linear_baseline(train, test, features, target, alpha) -> pd.Series:
    """Ridge on the features that are at least half present in this fold's train rows, gaps
    filled with the train medians (sparse inputs such as macro series would otherwise leave
    no complete row)."""
    present = [f for f in features if np.isfinite(train[f].to_numpy(float)).mean() >= 0.5]
    med = train[present].median()
    model = LinearBaseline(present, alpha).fit(train[present].fillna(med).assign(
        **{target: train[target]}), target)
    return model.predict(test[present].fillna(med))


def _on_rows(pred: pd.Series, index: pd.Index, name: str) -> pd.Series:
    """A model's predictions (one per row, in row order) on the rows ``index`` of the fold's
    data, the key the walk-forward stitches folds by."""
    return pd.Series(pred.to_numpy(), index=index, name=name)


def _lgbm_fold(ds: Dataset, cfg, seed: int):
    """The selected LightGBM candidates of one fold and seed -> (test predictions,
    importances). The ensemble's members are fitted whenever the ensemble is selected."""
    target = f"fwd_ret_{cfg.horizon}d"
    want = set(cfg.models)
    need_members = "regime_ensemble" in want
    test_index = ds.rows("test").index
    preds_valid, preds_test, imp = {}, {}, {}
    for name, objective in (("lgbm_reg", "regression"), ("lgbm_rank", "lambdarank")):
        if name not in want and not need_members:
            continue
        params = LgbmParams(**{**asdict(cfg.params), "objective": objective, "seed": seed})
        model = LgbmModel(ds.features, cfg.horizon, params).fit(ds)
        p = model.predict(ds, "test")
        preds_test[name] = _on_rows(p, test_index, p.name)
        if need_members:
            preds_valid[name] = model.predict(ds, "valid")
        imp[name] = model.feature_importance()
    if need_members:
        ens = RegimeEnsemble(["lgbm_reg", "lgbm_rank"], min_dates=cfg.ensemble_min_dates)
        ens.fit(stack_members(ds.rows("valid"), preds_valid, target, train=None))
        p = ens.predict(stack_members(ds.rows("test"), preds_test, test=None))
        preds_test["regime_ensemble"] = _on_rows(p, test_index, p.name)
    return ({m: p for m, p in preds_test.items() if m in want},
            {m: v for m, v in imp.items() if m in want})


def _sequence_fold(ds: Dataset, cfg, seeds):
    """Test predictions ``{(model, seed): Series aligned to the fold's test rows}`` of the
    selected sequence candidates in one fold. Training windows are cut once per window
    length and shared by candidates and seeds."""
    from training.sequence import SequenceModel

    test_rows = ds.rows("test")
    # the model predicts in (ts, ticker) order; the fold's rows are sorted the same way
    key = pd.MultiIndex.from_arrays([test_rows["ts"].to_numpy(), test_rows["ticker"].to_numpy()])
    cache: dict = {}
    out = {}
    for name in (m for m in cfg.models if m in SEQUENCE_MODELS):
        for seed in seeds:
            model = SequenceModel(cfg.sequence_config(name, seed), ds.features,
                                  samples_per_epoch=cfg.sequence_samples_per_epoch,
                                  window_cache=cache)
            try:
                model.fit(ds)
            except ValueError as e:
                raise ValueError(f"sequence candidate {name}: {e}; lengthen "
                                 f"WalkForwardConfig.train_days") from e
            pred = model.predict(ds, "test")
            out[(name, seed)] = pd.Series(pred.reindex(key).to_numpy(), index=test_rows.index,
                                          name=name)
    return out


@dataclass
class WalkForwardPlan:
    """What every fold job shares: the labelled rows, the folds and the baselines.

    Attributes:
        data: rows with a finite target, sorted by ``(ts, ticker)``, with a RangeIndex.
        features: model inputs (`usable_features`).
        folds: `training.splits.Fold` s of ``data``.
        baselines: every baseline's predictions on the stitched test rows.
        test_index: the stitched test rows (``data`` index), in fold order.
        fold_of: fold number of each ``data`` row (-1 outside every test segment).
        names_per_leg: names per backtest leg.
    """

    data: pd.DataFrame
    features: list[str]
    folds: list
    baselines: pd.DataFrame
    test_index: np.ndarray
    fold_of: pd.Series
    names_per_leg: int


@dataclass
class FoldOutput:
    """One fold's test predictions ``{(model, seed): Series}`` and LightGBM gain importances
    ``{(model, seed): Series}`` for some seeds, and the seconds it took."""

    fold: int
    seeds: tuple[int, ...]
    preds: dict
    importances: dict
    seconds: float


def plan_walkforward(frame: pd.DataFrame, feature_names,
                     cfg) -> WalkForwardPlan:
    """Cut ``frame`` into folds and compute the (deterministic) baselines on each test
    segment; see `run_walkforward`."""
    h, target = cfg.horizon, f"fwd_ret_{cfg.horizon}d"
    if h not in PAST_RETURN_COLS:
        raise ValueError(f"horizon {h}: the momentum baseline needs a past {h}-day return "
                         f"column; have {sorted(PAST_RETURN_COLS)}")
    data = frame[np.isfinite(frame[target].to_numpy(float))].sort_values(["ts", "ticker"])
    data = data.reset_index(drop=True)
    features = usable_features(data, feature_names)
    folds = walk_forward(data["ts"], horizon=h, train_days=cfg.train_days,
                         valid_days=cfg.valid_days, test_days=cfg.test_days,
                         max_folds=cfg.max_folds)
    # 3-5 names (the default universe) would give 0 names per leg at 20%: keep at least one
    n_per_leg = cfg.top_k or max(
        1, int(np.floor(data.groupby("ts")["ticker"].nunique().median() * cfg.quantile)))
    test_idx, base_parts = [], []
    fold_of = pd.Series(-1, index=data.index)
    for fold in folds:
        train, _valid, test = fold.split(data)
        test_idx.append(test.index)
        fold_of.loc[test.index] = fold.index
        lin = _linear_baseline(train, test, features, target, cfg.ridge_alpha)
        b = baseline_predictions(test, h, price_col=None, past_return_cols=PAST_RETURN_COLS)
        b[LINEAR_NAME] = lin
        base_parts.append(b)
    return WalkForwardPlan(data=data, features=features, folds=list(folds),
                           baselines=pd.concat(base_parts),
                           test_index=np.concatenate(test_idx), fold_of=fold_of,
                           names_per_leg=n_per_leg)


def fold_predictions(data: pd.DataFrame, features, fold, cfg, seeds=None) -> FoldOutput:
    """Fit every selected candidate on one fold for ``seeds`` (default: all of ``cfg``'s)
    and predict its test rows: the unit of work of a walk-forward (a Ray task per fold and
    seed in `training.lifecycle.evaluation.ray_fold_map`).

    Args:
        data: `WalkForwardPlan.data`.
        features: `WalkForwardPlan.features`.
        fold: one of `WalkForwardPlan.folds`.
        cfg: the walk-forward's config.
        seeds: seeds to fit; the sequence candidates share their windows across them.
    """
    t0 = time.perf_counter()
    seeds = tuple(cfg.seeds if seeds is None else seeds)
    train, valid, test = fold.split(data)
    masks = {}
    for seg, rows in (("train", train), ("valid", valid), ("test", test)):
        masks[seg] = np.zeros(len(data), bool)
        masks[seg][rows.index] = True  # data has a RangeIndex
    ds = Dataset(data, tuple(features), f"fwd_ret_{cfg.horizon}d", masks)
    preds, imps = {}, {}
    if any(m in LGBM_MODELS for m in cfg.models):
        for seed in seeds:
            p, imp = _lgbm_fold(ds, cfg, seed)
            preds.update({(m, seed): v for m, v in p.items()})
            imps.update({(m, seed): v for m, v in imp.items()})
    if any(m in SEQUENCE_MODELS for m in cfg.models):
        torch_threads = _set_torch_threads(cfg.sequence.get("num_threads"))
        try:
            # no valid segment: the sequence candidates neither purge against it nor score it
            seq_ds = Dataset(data, ds.features, ds.target,
                             {"train": masks["train"], "test": masks["test"]})
            preds.update(_sequence_fold(seq_ds, cfg, seeds))
        finally:
            _set_torch_threads(torch_threads)
    return FoldOutput(fold.index, seeds, preds, imps, time.perf_counter() - t0)


def _set_torch_threads(n: int | None) -> int | None:
    """Set torch's intra-op threads to ``n`` (None/0: leave them); return the previous value."""
    if not n:
        return None
    import torch

    prev = torch.get_num_threads()
    torch.set_num_threads(int(n))
    return prev
