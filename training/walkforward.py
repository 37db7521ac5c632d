"""Walk-forward evaluation: every model against every baseline, out of sample, over seeds.

Per fold (`training.splits.walk_forward`: train | purge | valid | purge | test, anchored;
`training.folds.fold_predictions` builds each candidate and calls only the
`training.model.Model` interface on it):

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
  not Ray Train: the report compares models, and Ray Train's fixed start cost per ``fit()``
  (bench/training.py) would be paid once per fold x seed x model and dominate. Optionally each epoch trains on
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
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from training.baselines import BASELINE_NAMES
from training.evaluate import (
    calibration_table,
    daily_ic,
    evaluate_with_backtest,
    market_wide_features,
    rank_ic,
)
from training.folds import (  # noqa: F401  (re-exported: the fold API)
    LGBM_MODELS,
    LINEAR_NAME,
    MODEL_NAMES,
    PAST_RETURN_COLS,
    SCORE_MODELS,
    SEQUENCE_MODELS,
    FoldOutput,
    WalkForwardPlan,
    fold_predictions,
    plan_walkforward,
    usable_features,
)
from training.lgbm import LgbmParams
from training.report import RunResult, comparison_table, write_report

_SEQUENCE_FIXED = ("model", "seed", "horizons")
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




def pred_column(name: str, seed: int | None) -> str:
    """Column of `WalkForwardResult.predictions` holding one run's test predictions."""
    return name if seed is None else f"{name}@{seed}"


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
