"""Walk-forward evaluation on a planted-signal market: every model (LightGBM and the sequence
networks) and baseline is reported over seeds, the planted reversal is found, the report files
are complete, no prediction sees data after its date; lambdarank pieces."""

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from features.pipeline import FEATURE_NAMES
from features.sources import skfolio_bars
from tests.training_fixtures import planted_frame
from training.baselines import BASELINE_NAMES
from training.config import sequence_walkforward_settings
from training.lgbm import LgbmModel, LgbmParams, quantile_buckets
from training.model import Dataset
from training.walkforward import (
    LGBM_MODELS,
    MODEL_NAMES,
    SEQUENCE_MODELS,
    WalkForwardConfig,
    fold_predictions,
    format_table,
    pred_column,
    run_walkforward,
    usable_features,
    verdict,
    write_walkforward_report,
)

# tiny sequence nets: a 10-row window, 8 units, a few hundred steps in all
SEQ = {"window": 10, "hidden": 8, "heads": 2, "epochs": 4, "batch_size": 128, "lr": 3e-3,
       "num_threads": 1}
CFG = WalkForwardConfig(horizon=1, train_days=250, valid_days=50, test_days=50, max_folds=2,
                        seeds=(0, 1, 2), params=LgbmParams(num_boost_round=30),
                        models=MODEL_NAMES, sequence=SEQ)


@pytest.fixture(scope="module")
def wf():
    return run_walkforward(planted_frame(), FEATURE_NAMES, CFG)


def test_quantile_buckets_are_per_date_quantiles():
    v = [0.1, 0.2, 0.3, 0.4, 0.5, -1.0, 0.0, 1.0, 2.0, 3.0]
    d = ["a"] * 5 + ["b"] * 5
    assert list(quantile_buckets(v, d, 5)) == [0, 1, 2, 3, 4, 0, 1, 2, 3, 4]
    assert set(quantile_buckets(np.arange(100.0), ["x"] * 100, 3)) == {0, 1, 2}


def test_lambdarank_learns_the_planted_cross_sectional_order():
    f = planted_frame()
    cut = f["ts"].unique()[300]
    train, test = f[f["ts"] < cut], f[f["ts"] >= cut]
    params = LgbmParams(objective="lambdarank", num_boost_round=40)
    m = LgbmModel(FEATURE_NAMES, 1, params).fit(
        Dataset.of(train.sample(frac=1, random_state=0), FEATURE_NAMES, train=None))
    from training.evaluate import rank_ic

    p = m.predict(Dataset.of(test, FEATURE_NAMES, test=None))
    # one prediction per test row, in row order, keyed by (ts, ticker)
    assert p.index.equals(pd.MultiIndex.from_frame(test[["ts", "ticker"]]))
    assert rank_ic(p, test["fwd_ret_1d"], test["ts"]) > 0.1  # planted reversal ~0.2
    with pytest.raises(ValueError, match="objective"):
        LgbmParams(objective="poisson")


def test_every_model_and_baseline_is_evaluated_over_seeds(wf):
    t = wf.table()
    assert [n for k, n in t.index if k == "model"] == list(MODEL_NAMES)
    assert [n for k, n in t.index if k == "baseline"] == [*BASELINE_NAMES, "linear"]
    assert (t.loc["model", "n_seeds"] == 3).all()
    assert len(wf.seed_metric("lgbm_rank")) == 3
    # the planted 1-day reversal: models and the reversal baseline find it, momentum not
    for m in LGBM_MODELS:
        assert t.loc[("model", m), "rank_ic_mean"] > 0.08, format_table(wf)
    assert t.loc[("baseline", "reversal_1d"), "rank_ic_mean"] > 0.1
    assert t.loc[("baseline", "momentum"), "rank_ic_mean"] < 0
    # folds tile the test dates without overlap, and the fold table has every model x seed
    assert len(wf.folds) == 2
    assert len(wf.fold_rank_ic) == 5 * 3 * 2 + 6 * 2


def test_sequence_candidates_run_through_the_walkforward_with_seed_spread(wf):
    t = wf.table()
    for m in SEQUENCE_MODELS:
        row = t.loc[("model", m)]
        # mean ± std over 3 seeds, both finite; different seeds give different nets
        assert row["n_seeds"] == 3
        for metric in ("rank_ic", "ic", "bt_sharpe", "rmse"):
            assert np.isfinite(row[f"{metric}_mean"]) and np.isfinite(row[f"{metric}_std"]), m
        assert row["rank_ic_std"] > 0
        # every test row got a forecast, scored by the same metrics and backtest
        run = next(r for r in wf.runs if r.name == m and r.seed == 0)
        assert run.metrics["coverage"] == 1.0
        assert run.equity is not None and run.calibration is not None
        assert run.feature_importance is None
        # tiny nets, a few hundred steps: they find part of the planted reversal
        assert row["rank_ic_mean"] > 0.0, format_table(wf)
    text = format_table(wf)
    assert "lstm" in text and "transformer" in text
    lines = wf.verdict()
    assert sum(line.startswith(("lstm ", "transformer ")) for line in lines) == 4


def _shocked_bars(bars: pd.DataFrame, after, seed: int = 7) -> pd.DataFrame:
    """Stock bars with every price after ``after`` scaled by a random walk of its own."""
    rng = np.random.default_rng(seed)
    out = bars.sort_values(["ticker", "ts"]).reset_index(drop=True).copy()
    late = out["ts"] > after
    shock = np.exp(rng.normal(0, 0.05, late.sum()))
    factor = pd.Series(1.0, index=out.index)
    factor[late] = shock
    factor = factor.groupby(out["ticker"]).cumprod()  # a new path, not single-day spikes
    for c in ("open", "high", "low", "close"):
        out[c] = out[c] * factor
    out.loc[late, "volume"] = out.loc[late, "volume"] * 3.0
    return out


def test_predictions_at_the_first_test_date_ignore_everything_after_it():
    from features.pipeline import build_features_local
    from tests.training_fixtures import market_bars
    from training.synthetic import make_market

    stocks = make_market(n_tickers=12, n_days=420, seed=5).bars.drop(columns=["adj_close"])

    def frame(b):
        bars = pd.concat([b, market_bars(b)], ignore_index=True)
        bars = bars.assign(adj_factor=1.0, source="synthetic", ingested_at=bars["ts"].max())
        return build_features_local(bars)

    cfg = replace(CFG, seeds=(0,), max_folds=1)
    clean = run_walkforward(frame(stocks), FEATURE_NAMES, cfg)
    first = pd.Timestamp(clean.folds[0]["test"]["start"])
    shocked = run_walkforward(frame(_shocked_bars(stocks, first)), FEATURE_NAMES, cfg)
    assert shocked.folds == clean.folds
    a, b = clean.predictions, shocked.predictions
    assert (a["ts"] > first).any() and a[["ticker", "ts"]].equals(b[["ticker", "ts"]])
    at_first = (a["ts"] == first).to_numpy()
    cols = [pred_column(m, 0) for m in MODEL_NAMES] + [*BASELINE_NAMES, "linear"]
    for c in cols:
        np.testing.assert_array_equal(a.loc[at_first, c].to_numpy(),
                                      b.loc[at_first, c].to_numpy(), err_msg=c)
    # the shock is real: later labels moved, and the sequence windows that contain shocked
    # rows moved their forecasts
    assert not np.allclose(a.loc[~at_first, "fwd_ret_1d"], b.loc[~at_first, "fwd_ret_1d"])
    for m in SEQUENCE_MODELS:
        assert not np.allclose(a.loc[~at_first, pred_column(m, 0)],
                               b.loc[~at_first, pred_column(m, 0)]), m


def test_candidate_selection_and_sequence_settings_are_validated():
    with pytest.raises(ValueError, match="lgbm_regg"):
        WalkForwardConfig(models=("lgbm_regg",))
    with pytest.raises(ValueError, match="horizons"):
        WalkForwardConfig(sequence={"horizons": [1, 5]})
    with pytest.raises(ValueError, match="hiden"):
        WalkForwardConfig(sequence={"hiden": 8})
    seq = sequence_walkforward_settings()  # the shipped configs/sequence.yaml
    cfg = WalkForwardConfig(horizon=5, models=("lstm", "transformer"), **seq)
    c = cfg.sequence_config("transformer", 2)
    assert (c.model, c.seed, c.horizons) == ("transformer", 2, (5,))
    assert c.num_threads == 1 and c.epochs <= 10  # small on purpose: ~100-300 fits/report


def test_only_the_selected_candidates_are_fitted_and_reported():
    f = planted_frame()
    cfg = replace(CFG, seeds=(0,), max_folds=1, models=("regime_ensemble", "lstm"))
    res = run_walkforward(f, FEATURE_NAMES, cfg)
    assert [n for k, n in res.table().index if k == "model"] == ["regime_ensemble", "lstm"]
    assert pred_column("lgbm_reg", 0) not in res.predictions


def test_verdict_says_plainly_when_a_model_loses():
    t = pd.DataFrame(
        {"n_seeds": [3, 1], "rank_ic_mean": [0.01, 0.05], "rank_ic_std": [0.002, np.nan],
         "bt_sharpe_mean": [1.0, 0.5], "bt_sharpe_std": [0.1, np.nan]},
        index=pd.MultiIndex.from_tuples([("model", "m"), ("baseline", "b")],
                                        names=["kind", "name"]))
    lines = verdict(t)
    assert "m does NOT beat the baselines on RankIC: 0.0100 ± 0.0020 vs best baseline b" \
        in lines[0]
    assert lines[1].startswith("m beats every baseline on long-short Sharpe")
    assert "no edge" not in lines[1]
    t.loc[("model", "m"), "bt_sharpe_mean"] = -0.1
    t.loc[("baseline", "b"), "bt_sharpe_mean"] = -0.3
    assert verdict(t)[1].endswith("(but long-short Sharpe is not positive: no edge).")


def test_report_files_hold_every_model_and_baseline(wf, tmp_path):
    paths = write_walkforward_report(wf, tmp_path, title="t", data_desc="synthetic",
                                     data_hash="abc")
    rep = json.loads(paths["json"].read_text())
    names = {(r["kind"], r["name"]) for r in rep["comparison"]}
    assert names == {("model", m) for m in MODEL_NAMES} | {
        ("baseline", b) for b in (*BASELINE_NAMES, "linear")}
    assert "verdict" in rep["meta"] and rep["meta"]["data_snapshot_sha256"] == "abc"
    assert "lstm" in rep["meta"]["verdict"] and "in each fold job" in rep["meta"]["sequence_models"]
    # every model x seed carries its equity and IC curves into the plots
    curves = {(r["name"], r["seed"]) for r in rep["runs"] if r["equity"] and r["daily_ic"]}
    assert {(m, s) for m in MODEL_NAMES for s in (0, 1, 2)} <= curves
    html = paths["html"].read_text()
    for section in ("fig-equity", "fig-ic", "fig-importance", "fig-calibration",
                    "Models vs baselines"):
        assert section in html
    for n in (*MODEL_NAMES, "reversal_1d", "linear"):
        assert n in html
    assert '<script src="http' not in html  # self-contained: plotly.js is inline
    assert paths["folds"].exists()


def test_fold_jobs_in_any_order_give_the_sequential_result():
    """`run_walkforward` with ``map_folds`` running one job per (fold, seed), in shuffled
    order (what the Ray tasks do), equals the default fold-by-fold run to the bit; missing or
    duplicated jobs are refused."""
    cfg = replace(CFG, seeds=(0, 1), models=("lgbm_reg", "regime_ensemble", "lstm"))
    frame = planted_frame()
    seq = run_walkforward(frame, FEATURE_NAMES, cfg)
    seen = []

    def per_job(plan, c, log):
        jobs = [(f, s) for f in plan.folds for s in c.seeds]
        for i in np.random.default_rng(3).permutation(len(jobs)):
            f, s = jobs[i]
            seen.append((f.index, s))
            yield fold_predictions(plan.data, plan.features, f, c, (s,))

    par = run_walkforward(frame, FEATURE_NAMES, cfg, map_folds=per_job)
    assert sorted(seen) == [(f, s) for f in range(2) for s in (0, 1)] and seen != sorted(seen)
    pd.testing.assert_frame_equal(par.predictions, seq.predictions)
    pd.testing.assert_frame_equal(par.fold_rank_ic, seq.fold_rank_ic)
    assert [(r.name, r.seed) for r in par.runs] == [(r.name, r.seed) for r in seq.runs]
    pd.testing.assert_frame_equal(pd.DataFrame([r.metrics for r in par.runs]),
                                  pd.DataFrame([r.metrics for r in seq.runs]))
    imp = {(r.name, r.seed): r.feature_importance for r in seq.runs}
    for r in par.runs:
        if r.feature_importance is not None:
            pd.testing.assert_series_equal(r.feature_importance, imp[(r.name, r.seed)])

    def drop_one(plan, c, log):
        return list(per_job(plan, c, log))[1:]

    with pytest.raises(ValueError, match="lack"):
        run_walkforward(frame, FEATURE_NAMES, cfg, map_folds=drop_one)

    def twice(plan, c, log):
        outs = list(per_job(plan, c, log))
        return outs + outs[:1]

    with pytest.raises(ValueError, match="twice"):
        run_walkforward(frame, FEATURE_NAMES, cfg, map_folds=twice)


def test_skfolio_close_only_bars_are_degenerate_ohlc():
    try:
        bars = skfolio_bars()
    except FileNotFoundError:
        pytest.skip("skfolio wheel not installed")
    assert bars["ticker"].nunique() == 21  # 20 stocks + the index
    assert (bars["open"] == bars["close"]).all() and (bars["high"] == bars["low"]).all()
    from features.pipeline import build_features_local

    f = build_features_local(bars[bars["ts"] < "1992-01-01"])
    assert "volume_z_20" not in usable_features(f, FEATURE_NAMES)
    assert "atr_norm_14" in usable_features(f, FEATURE_NAMES)  # = mean |close move| now
