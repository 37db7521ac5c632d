"""Walk-forward evaluation: every model against every baseline, out of sample, over seeds.

Per fold (`training.splits.walk_forward`: train | purge | valid | purge | test, anchored):

- ``lgbm_reg`` (LightGBM regression) and ``lgbm_rank`` (LightGBM lambdarank by date) are fitted
  on the fold's purged train rows;
- ``regime_ensemble`` (`training.ensemble.RegimeEnsemble` over those two) fits its regime split
  and weights on the fold's **validation** rows, which the members never saw;
- ``lstm`` and ``transformer`` (`training.sequence.SequenceModel` networks) are fitted on the
  same purged train rows, on the evaluated horizon only (the same target as every other
  candidate), with scalers from those rows only. A sample is the window of a ticker's last
  ``window`` rows ending at its date, so test windows reach back into train/valid rows but
  never past their own date. They are fitted inside the fold's job (`fold_predictions`: a
  Ray task, or this process) with the plain torch loop (`training.sequence.train_epochs`),
  not Ray Train: the report compares models, and Ray
  Train's fixed start cost (10-12 s per ``fit()`` quiet, ~30 s under load; bench/training.py)
  would be paid once per fold x seed x model and dominate. Optionally each epoch trains on
  a fresh random draw of ``sequence_samples_per_epoch`` windows of the fold's train segment,
  which bounds the cost of late folds on long histories;
- every member predicts the fold's test rows; test segments tile the data without overlap, so
  the stitched test predictions are one out-of-sample history per model and seed.

Candidates are chosen with ``WalkForwardConfig.models`` (`MODEL_NAMES`; the default is the
LightGBM ones, which `stockray retrain` needs for promotion; `stockray evaluate --models all`
adds the sequence models). Selecting ``regime_ensemble`` fits its two members even when they are not
reported.

Baselines (`training.baselines`) on the same test rows: ``zero``, ``momentum``, ``reversal_1d``,
``reversal_5d``, ``always_up`` from past returns, and ``linear`` (ridge on the same features,
fitted on each fold's train rows). They are deterministic: one "seed" each.

Metrics per (model, seed) come from `training.evaluate.evaluate_predictions` on the stitched
test rows; `training.report.write_report` writes the JSON + HTML. `verdict` states plainly,
per model, whether it beats the best baseline on RankIC and on the backtest's Sharpe.

Data: any panel of features and labels; `training.data` loads a data dir's offline store
(point-in-time joined) or the skfolio universe (`training.data.skfolio_frame`).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from training.baselines import BASELINE_NAMES, LinearBaseline, baseline_predictions
from training.ensemble import RegimeEnsemble
from training.evaluate import (
    calibration_table,
    daily_ic,
    evaluate_with_backtest,
    market_wide_features,
    rank_ic,
)
from training.lgbm import LgbmModel, LgbmParams
from training.report import RunResult, comparison_table, write_report
from training.splits import walk_forward

LGBM_MODELS = ("lgbm_reg", "lgbm_rank", "regime_ensemble")
#: Candidates whose output is a rank score with no return scale (reported by score decile).
SCORE_MODELS = ("lgbm_rank", "regime_ensemble")
SEQUENCE_MODELS = ("lstm", "transformer")
# every walk-forward candidate, in report order
MODEL_NAMES = (*LGBM_MODELS, *SEQUENCE_MODELS)
# SequenceConfig fields the walk-forward sets itself (per candidate, seed and horizon)
_SEQUENCE_FIXED = ("model", "seed", "horizons")
LINEAR_NAME = "linear"
# past-return feature columns the momentum / reversal baselines read (lookback -> column)
PAST_RETURN_COLS = {1: "ret_1d", 5: "ret_5d", 20: "ret_20d"}
# which walk-forward model stands for which registry family (see training.registry)
FAMILY_MODEL = {"lgbm": "lgbm_reg", "lgbmrank": "lgbm_rank"}


@dataclass
class WalkForwardConfig:
    """How the walk-forward is cut and what is fitted in each fold."""

    horizon: int = 5
    train_days: int = 756  # first (anchored, expanding) training window: 3 years of dates
    valid_days: int = 126  # ensemble-weight segment: half a year
    test_days: int = 126  # out-of-sample segment per fold; folds step by this much
    max_folds: int | None = None  # None = as many as fit in the data
    seeds: tuple[int, ...] = (0, 1, 2)
    params: LgbmParams = field(default_factory=LgbmParams)
    ridge_alpha: float = 10.0  # on standardised features; 10 is a mild shrink for ~18 inputs
    ensemble_min_dates: int = 20
    cost_bps: float = 10.0
    quantile: float = 0.2  # backtest names per leg = max(1, floor(median names * quantile))
    top_k: int | None = None  # fixed names per leg instead (overrides quantile)
    models: tuple[str, ...] = LGBM_MODELS  # candidates (`MODEL_NAMES`), reported in that order
    # SequenceConfig overrides for ``lstm`` / ``transformer`` (all but model, seed, horizons);
    # `training.config.sequence_walkforward_settings` reads them from configs/sequence.yaml
    sequence: dict = field(default_factory=dict)
    sequence_samples_per_epoch: int | None = None  # None = every train window every epoch

    def __post_init__(self) -> None:
        self.seeds = tuple(int(s) for s in self.seeds)
        self.models = tuple(self.models)
        unknown = [m for m in self.models if m not in MODEL_NAMES]
        if unknown or not self.models:
            raise ValueError(f"WalkForwardConfig.models={list(self.models)}: pick one or more of "
                             f"{list(MODEL_NAMES)}")
        if len(set(self.models)) != len(self.models):
            raise ValueError(f"WalkForwardConfig.models lists a model twice: {list(self.models)}")
        bad = []
        if self.sequence:  # importing training.sequence costs a torch import: only when needed
            from dataclasses import fields as dc_fields

            from training.sequence import SequenceConfig

            known = {f.name for f in dc_fields(SequenceConfig)} - set(_SEQUENCE_FIXED)
            bad = sorted(set(self.sequence) - known)
        if bad:
            raise ValueError(f"WalkForwardConfig.sequence keys {bad} are not settable here: "
                             f"give SequenceConfig fields other than {list(_SEQUENCE_FIXED)} "
                             f"(those are set per candidate, seed and horizon)")
        if self.sequence_samples_per_epoch is not None and self.sequence_samples_per_epoch < 1:
            raise ValueError("WalkForwardConfig.sequence_samples_per_epoch must be >= 1 or None, "
                             f"got {self.sequence_samples_per_epoch}")

    def sequence_config(self, model: str, seed: int):
        """`SequenceConfig` of one sequence candidate and seed, on this walk-forward's horizon."""
        from training.sequence import SequenceConfig

        return SequenceConfig.from_dict({**self.sequence, "model": model, "seed": int(seed),
                                         "horizons": (self.horizon,)})

    def to_dict(self) -> dict:
        d = asdict(self)
        d["seeds"] = list(self.seeds)
        d["models"] = list(self.models)
        return d


@dataclass
class WalkForwardResult:
    """Everything one walk-forward produced.

    Attributes:
        runs: one `RunResult` per (model, seed) and per baseline.
        fold_rank_ic: rows (model, seed, fold, rank_ic) of each fold's test segment.
        folds: each fold's segments (`Fold.to_dict`).
        feature_names: model inputs.
        config: the `WalkForwardConfig` used.
        seconds: wall time.
        names_per_leg: names per backtest leg.
        predictions: the stitched test rows (``ticker, ts`` and the target) with one column
            per model run (`pred_column`: ``"<model>@<seed>"``) and per baseline
            (``"<baseline>"``), indexed like the walk-forward's sorted frame.
        market_wide: features identical across tickers on every date (the report warns when
            the models' top features are these).
    """

    runs: list[RunResult]
    fold_rank_ic: pd.DataFrame
    folds: list[dict]
    feature_names: list[str]
    config: WalkForwardConfig
    seconds: float
    names_per_leg: int = 1
    predictions: pd.DataFrame | None = None
    market_wide: list[str] = field(default_factory=list)

    def table(self) -> pd.DataFrame:
        return comparison_table(self.runs)

    def seed_metric(self, model: str, metric: str = "rank_ic") -> list[float]:
        """``metric`` of ``model`` for each seed, in seed order."""
        return [float(r.metrics[metric]) for r in self.runs
                if r.kind == "model" and r.name == model]

    def summary(self) -> dict[str, float]:
        """Flat ``wf_<name>_<metric>_{mean,std}`` metrics (for MLflow)."""
        t = self.table()
        out = {}
        for (_, name), row in t.iterrows():
            for m in ("rank_ic", "ic", "bt_sharpe", "rmse"):
                for stat in ("mean", "std"):
                    v = float(row[f"{m}_{stat}"])
                    if np.isfinite(v):
                        out[f"wf_{name}_{m}_{stat}"] = v
        return out

    def verdict(self) -> list[str]:
        return verdict(self.table())


def verdict(table: pd.DataFrame) -> list[str]:
    """One plain sentence per model: does it beat the best baseline on RankIC and Sharpe?

    A model "beats" a baseline on a metric when its mean over seeds is higher than the best
    baseline's (baselines with an undefined metric, e.g. constant forecasts' RankIC, are
    skipped). The std over seeds is quoted so a win inside the seed noise is visible.
    """
    lines = []
    base = table.xs("baseline", level="kind")
    models = table.xs("model", level="kind") if "model" in table.index.get_level_values(0) \
        else table.iloc[0:0]
    for metric, label in (("rank_ic", "RankIC"), ("bt_sharpe", "long-short Sharpe")):
        col = base[f"{metric}_mean"].dropna()
        if col.empty:
            continue
        best_name, best = col.idxmax(), float(col.max())
        for name, row in models.iterrows():
            m, s = float(row[f"{metric}_mean"]), float(row[f"{metric}_std"])
            s_txt = f" ± {s:.4f}" if np.isfinite(s) else ""
            if np.isfinite(m) and m > best:
                # beating baselines that all lose money is not an edge: say so
                caveat = (f" (but {label} is not positive: no edge)" if m <= 0 else "")
                lines.append(f"{name} beats every baseline on {label}: {m:.4f}{s_txt} vs best "
                             f"baseline {best_name} {best:.4f}{caveat}.")
            else:
                lines.append(f"{name} does NOT beat the baselines on {label}: {m:.4f}{s_txt} "
                             f"vs best baseline {best_name} {best:.4f}.")
    return lines


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


def pred_column(name: str, seed: int | None) -> str:
    """Column of `WalkForwardResult.predictions` holding one run's test predictions."""
    return name if seed is None else f"{name}@{seed}"


def _fit_fold(train, valid, test, features, cfg: WalkForwardConfig, seed: int):
    """The selected LightGBM candidates of one fold and seed -> (test predictions,
    importances). The ensemble's members are fitted whenever the ensemble is selected."""
    target = f"fwd_ret_{cfg.horizon}d"
    want = set(cfg.models)
    need_members = "regime_ensemble" in want
    preds_valid, preds_test, imp = {}, {}, {}
    for name, objective in (("lgbm_reg", "regression"), ("lgbm_rank", "lambdarank")):
        if name not in want and not need_members:
            continue
        params = LgbmParams(**{**asdict(cfg.params), "objective": objective, "seed": seed})
        model = LgbmModel(features, cfg.horizon, params).fit(train)
        preds_test[name] = model.predict(test)
        if need_members:
            preds_valid[name] = model.predict(valid)
        imp[name] = model.feature_importance()
    if need_members:
        ens = RegimeEnsemble(["lgbm_reg", "lgbm_rank"], min_dates=cfg.ensemble_min_dates)
        ens.fit(valid, preds_valid, target)
        preds_test["regime_ensemble"] = ens.predict(test, preds_test)
    return ({m: p for m, p in preds_test.items() if m in want},
            {m: v for m, v in imp.items() if m in want})


def fit_sequence(train_windows, seq_cfg, n_features: int,
                 samples_per_epoch: int | None = None):
    """Train a `SequenceNet` on one fold's training windows with the plain torch loop.

    The same steps as `SequenceModel.fit` (seeded init, scalers from the training windows
    only, AdamW on the masked loss); with ``samples_per_epoch`` below the number of windows,
    each epoch trains on a fresh seeded draw of that many windows instead of all of them.

    Args:
        train_windows: `training.sequence.Windows` of the purged training rows.
        seq_cfg: `SequenceConfig` (``seed`` seeds the init, batch order and draws).
        n_features: input width.
        samples_per_epoch: windows per epoch; None = all.

    Returns:
        ``(net in eval mode, epoch history)``.

    Raises:
        ValueError: fewer than 100 labelled training windows.
    """
    import torch

    from training.sequence import SequenceNet, fit_scalers, make_optimizer, train_epochs

    x, y = train_windows.x, train_windows.y
    n_lab = int(np.isfinite(y).any(axis=1).sum())
    if n_lab < 100:
        raise ValueError(f"sequence candidate {seq_cfg.model}: only {n_lab} labelled training "
                         f"windows in this fold; lengthen WalkForwardConfig.train_days")
    torch.manual_seed(seq_cfg.seed)
    net = SequenceNet(n_features, seq_cfg)
    fit_scalers(net, x, y)
    opt = make_optimizer(net, seq_cfg)
    if samples_per_epoch is None or len(x) <= samples_per_epoch:
        state = train_epochs(net, opt, x, y, seq_cfg)
    else:
        rng = np.random.default_rng(seq_cfg.seed)
        state = None
        for epoch in range(seq_cfg.epochs):
            # sorted draw: contiguous-ish memory reads; train_epochs shuffles the batches
            idx = np.sort(rng.choice(len(x), samples_per_epoch, replace=False))
            state = train_epochs(net, opt, x[idx], y[idx], replace(seq_cfg, epochs=epoch + 1),
                                 start_epoch=epoch, state=state)
    net.eval()
    return net, (state.history if state is not None else [])


def _sequence_fold(data, train_mask, test_mask, features, cfg: WalkForwardConfig, seeds):
    """Test predictions ``{(model, seed): Series aligned to data's test rows}`` of the
    selected sequence candidates in one fold. Training windows are cut once per window
    length and shared by candidates and seeds."""
    from training.sequence import build_windows, predict_array

    target = f"fwd_ret_{cfg.horizon}d"
    out = {}
    windows: dict = {}  # window length -> (train, test) windows of this fold
    test_index = data.index[test_mask]
    # build_windows returns (ts, ticker) order; data is sorted the same way, so map by key
    key = pd.MultiIndex.from_arrays([data.loc[test_index, "ts"].to_numpy(),
                                     data.loc[test_index, "ticker"].to_numpy()])
    for name in (m for m in cfg.models if m in SEQUENCE_MODELS):
        for seed in seeds:
            seq_cfg = cfg.sequence_config(name, seed)
            L = seq_cfg.window
            if L not in windows:
                windows[L] = (build_windows(data, features, L, [target], train_mask),
                              build_windows(data, features, L, (), test_mask))
            train_w, test_w = windows[L]
            net, _hist = fit_sequence(train_w, seq_cfg, len(features),
                                      cfg.sequence_samples_per_epoch)
            pred = pd.Series(predict_array(net, test_w.x)[:, 0].astype(float),
                             index=test_w.index)
            out[(name, seed)] = pd.Series(pred.reindex(key).to_numpy(), index=test_index,
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
                     cfg: WalkForwardConfig) -> WalkForwardPlan:
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


def fold_predictions(data: pd.DataFrame, features, fold, cfg: WalkForwardConfig,
                     seeds=None) -> FoldOutput:
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
    preds, imps = {}, {}
    if any(m in LGBM_MODELS for m in cfg.models):
        for seed in seeds:
            p, imp = _fit_fold(train, valid, test, features, cfg, seed)
            preds.update({(m, seed): v for m, v in p.items()})
            imps.update({(m, seed): v for m, v in imp.items()})
    if any(m in SEQUENCE_MODELS for m in cfg.models):
        train_mask = np.zeros(len(data), bool)
        train_mask[train.index] = True  # data has a RangeIndex
        test_mask = np.zeros(len(data), bool)
        test_mask[test.index] = True
        torch_threads = _set_torch_threads(cfg.sequence.get("num_threads"))
        try:
            preds.update(_sequence_fold(data, train_mask, test_mask, features, cfg, seeds))
        finally:
            _set_torch_threads(torch_threads)
    return FoldOutput(fold.index, seeds, preds, imps, time.perf_counter() - t0)


def run_walkforward(frame: pd.DataFrame, feature_names, cfg: WalkForwardConfig | None = None,
                    log=None, map_folds=None) -> WalkForwardResult:
    """Walk-forward of every selected model and every baseline on ``frame`` (see module
    docstring).

    Args:
        frame: panel with ``ticker, ts``, the features, ``fwd_ret_{h}d`` and the past-return
            columns ``ret_1d, ret_5d`` (and ``ret_{h}d`` for momentum).
        feature_names: model inputs (constant / all-NaN ones are dropped, see
            `usable_features`).
        cfg: fold layout, seeds, candidates, hyperparameters.
        log: optional ``callable(str)`` for progress lines.
        map_folds: optional ``callable(plan, cfg, log) -> iterable of FoldOutput`` that runs
            `fold_predictions` for every fold and seed elsewhere (e.g. as Ray tasks); by
            default the folds run here one after another, all seeds per fold.

    Returns:
        `WalkForwardResult`.
    """
    cfg = cfg or WalkForwardConfig()
    t0 = time.perf_counter()
    plan = plan_walkforward(frame, feature_names, cfg)
    if map_folds is None:
        outputs = []
        for fold in plan.folds:
            outputs.append(fold_predictions(plan.data, plan.features, fold, cfg))
            if log:
                log(f"  fold {fold.index + 1}/{len(plan.folds)} done, seeds {list(cfg.seeds)} "
                    f"({time.perf_counter() - t0:.0f}s)")
    else:
        outputs = list(map_folds(plan, cfg, log))
    return assemble_walkforward(plan, outputs, cfg, seconds=time.perf_counter() - t0)


def assemble_walkforward(plan: WalkForwardPlan, outputs, cfg: WalkForwardConfig,
                         seconds: float) -> WalkForwardResult:
    """Stitch every fold's test predictions per (model, seed) and evaluate them, and the
    baselines, on the same test rows.

    Raises:
        ValueError: a (fold, seed) is missing from ``outputs`` or given twice.
    """
    target = f"fwd_ret_{cfg.horizon}d"
    by_key = {}
    for out in outputs:
        for seed in out.seeds:
            if (out.fold, seed) in by_key:
                raise ValueError(f"fold {out.fold} seed {seed} was computed twice")
            by_key[(out.fold, seed)] = out
    missing = [(f.index, s) for f in plan.folds for s in cfg.seeds if (f.index, s) not in by_key]
    if missing:
        raise ValueError(f"walk-forward outputs lack (fold, seed) {missing[:5]}"
                         f"{' ...' if len(missing) > 5 else ''}")
    test_rows = plan.data.loc[plan.test_index]
    fold_of = plan.fold_of
    eval_kw = {"horizon": cfg.horizon, "top_k": plan.names_per_leg, "cost_bps": cfg.cost_bps}

    runs: list[RunResult] = []
    fold_rows = []
    pred_cols: dict[str, pd.Series] = {}

    def add_run(name, kind, seed, pred: pd.Series, imp=None):
        f = test_rows[["ticker", "ts", target]].assign(pred=pred.reindex(test_rows.index))
        pred_cols[pred_column(name, seed)] = f["pred"]
        metrics, bt = evaluate_with_backtest(f, "pred", target, **eval_kw)
        runs.append(RunResult(
            name, kind, seed, metrics, equity=bt.equity,
            daily_ic=daily_ic(f["pred"], f[target], f["ts"], "spearman"),
            feature_importance=imp,
            calibration=calibration_table(f["pred"], f[target]) if kind == "model" else None,
            output="score" if name in SCORE_MODELS else "return"))
        for k, g in f.groupby(fold_of.reindex(f.index)):
            fold_rows.append({"name": name, "seed": seed, "fold": int(k),
                              "rank_ic": rank_ic(g["pred"], g[target], g["ts"])})

    for seed in cfg.seeds:
        for m in cfg.models:
            outs = [by_key[(f.index, seed)] for f in plan.folds]
            imp = None
            if all((m, seed) in o.importances for o in outs):
                imp = pd.concat([o.importances[(m, seed)] for o in outs], axis=1).mean(axis=1)
                imp = imp / imp.sum() if imp.sum() > 0 else imp  # share of total gain
            add_run(m, "model", seed, pd.concat([o.preds[(m, seed)] for o in outs]), imp)
    for name in (*BASELINE_NAMES, LINEAR_NAME):
        add_run(name, "baseline", None, plan.baselines[name])
    predictions = pd.concat([test_rows[["ticker", "ts", target]],
                             pd.DataFrame(pred_cols, index=test_rows.index)], axis=1)
    return WalkForwardResult(runs=runs, fold_rank_ic=pd.DataFrame(fold_rows),
                             folds=[f.to_dict() for f in plan.folds],
                             feature_names=plan.features, config=cfg, seconds=seconds,
                             names_per_leg=plan.names_per_leg, predictions=predictions,
                             market_wide=market_wide_features(plan.data, plan.features))


def _set_torch_threads(n: int | None) -> int | None:
    """Set torch's intra-op threads to ``n`` (None/0: leave them); return the previous value."""
    if not n:
        return None
    import torch

    prev = torch.get_num_threads()
    torch.set_num_threads(int(n))
    return prev


def write_walkforward_report(result: WalkForwardResult, out_dir: Path, *, title: str,
                             data_desc: str, data_hash: str,
                             extra_meta: dict | None = None) -> dict[str, Path]:
    """``report.json`` + ``report.html`` (+ ``fold_rank_ic.csv``) in ``out_dir``."""
    cfg = result.config
    meta = {
        "data": data_desc,
        "data_snapshot_sha256": data_hash,
        "horizon_days": cfg.horizon,
        "folds": f"{len(result.folds)} anchored walk-forward folds, test {cfg.test_days} "
                 f"dates each, first train {cfg.train_days} dates, valid {cfg.valid_days}, "
                 f"purge = horizon ({result.folds[0]['test']['start'][:10]} .. "
                 f"{result.folds[-1]['test']['end'][:10]} out of sample)",
        "seeds": list(cfg.seeds),
        "backtest": f"long-short top/bottom {result.names_per_leg} name(s), rebalanced every "
                    f"{cfg.horizon} dates, {cfg.cost_bps} bps per unit turnover",
        "features": ", ".join(result.feature_names),
        "models": ", ".join(cfg.models),
        **({"sequence_models": _sequence_desc(cfg)}
           if any(m in SEQUENCE_MODELS for m in cfg.models) else {}),
        "verdict": " ".join(result.verdict()),
        "wall_time_s": round(result.seconds, 1),
        "market_wide_features": list(result.market_wide),
        **(extra_meta or {}),
    }
    paths = write_report(result.runs, out_dir, title=title, meta=meta)
    fold_csv = Path(out_dir) / "fold_rank_ic.csv"
    result.fold_rank_ic.to_csv(fold_csv, index=False)
    paths["folds"] = fold_csv
    return paths


def _sequence_desc(cfg: WalkForwardConfig) -> str:
    c = cfg.sequence_config("lstm", 0)
    draw = (f"a fresh draw of {cfg.sequence_samples_per_epoch} train windows per epoch"
            if cfg.sequence_samples_per_epoch else "every train window every epoch")
    return (f"window {c.window}, hidden {c.hidden}, layers {c.layers}, heads {c.heads} "
            f"(transformer), {c.epochs} epochs, batch {c.batch_size}, lr {c.lr}, {draw}; "
            f"trained on the {cfg.horizon}-day label only, in each fold job (plain torch loop, "
            f"{c.num_threads or 'default'} thread(s)), per fold and seed")


def format_table(result: WalkForwardResult,
                 metrics=("rank_ic", "ic", "bt_sharpe", "hit_rate")) -> str:
    """Plain-text comparison table (mean ± std over seeds)."""
    t = result.table()
    head = f"  {'kind':<8} {'name':<16} {'seeds':>5} " + " ".join(f"{m:>18}" for m in metrics)
    lines = [head]
    for (kind, name), row in t.iterrows():
        cells = []
        for m in metrics:
            mu, sd = row[f"{m}_mean"], row[f"{m}_std"]
            cells.append(f"{'NaN':>18}" if not np.isfinite(mu) else
                         f"{mu:>9.4f} ± {sd:<6.4f}" if np.isfinite(sd) else f"{mu:>18.4f}")
        lines.append(f"  {kind:<8} {name:<16} {int(row['n_seeds']):>5} " + " ".join(cells))
    return "\n".join(lines)
