"""Walk-forward evaluation on a planted-signal market: every model and baseline is reported,
the planted reversal is found, the report files are complete; lambdarank pieces."""

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from features.pipeline import FEATURE_NAMES
from tests.training_fixtures import planted_frame
from training.baselines import BASELINE_NAMES
from training.lgbm import LgbmModel, LgbmParams, quantile_buckets
from training.walkforward import (
    MODEL_NAMES,
    WalkForwardConfig,
    format_table,
    merge_results,
    run_walkforward,
    skfolio_bars,
    usable_features,
    verdict,
    write_walkforward_report,
)

CFG = WalkForwardConfig(horizon=1, train_days=250, valid_days=50, test_days=50, max_folds=2,
                        seeds=(0, 1, 2), params=LgbmParams(num_boost_round=30))


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
    m = LgbmModel(FEATURE_NAMES, 1, params).fit(train.sample(frac=1, random_state=0))
    from training.evaluate import rank_ic

    p = m.predict(test)
    assert p.index.equals(test.index)
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
    for m in MODEL_NAMES:
        assert t.loc[("model", m), "rank_ic_mean"] > 0.08, format_table(wf)
    assert t.loc[("baseline", "reversal_1d"), "rank_ic_mean"] > 0.1
    assert t.loc[("baseline", "momentum"), "rank_ic_mean"] < 0
    # folds tile the test dates without overlap, and the fold table has every model x seed
    assert len(wf.folds) == 2
    assert len(wf.fold_rank_ic) == 3 * 3 * 2 + 6 * 2


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


def test_report_files_hold_every_model_and_baseline(wf, tmp_path):
    paths = write_walkforward_report(wf, tmp_path, title="t", data_desc="synthetic",
                                     data_hash="abc")
    rep = json.loads(paths["json"].read_text())
    names = {(r["kind"], r["name"]) for r in rep["comparison"]}
    assert names == {("model", m) for m in MODEL_NAMES} | {
        ("baseline", b) for b in (*BASELINE_NAMES, "linear")}
    assert "verdict" in rep["meta"] and rep["meta"]["data_snapshot_sha256"] == "abc"
    html = paths["html"].read_text()
    for section in ("fig-equity", "fig-ic", "fig-importance", "fig-calibration",
                    "Models vs baselines"):
        assert section in html
    for n in (*MODEL_NAMES, "reversal_1d", "linear"):
        assert n in html
    assert '<script src="http' not in html  # self-contained: plotly.js is inline
    assert paths["folds"].exists()


def test_merge_of_per_seed_parts_keeps_models_and_one_set_of_baselines(wf):
    def part(seed):
        runs = [r for r in wf.runs if r.seed in (seed, None)]
        folds = wf.fold_rank_ic[wf.fold_rank_ic["seed"].isin([seed]) |
                                wf.fold_rank_ic["seed"].isna()]
        return replace(wf, runs=runs, fold_rank_ic=folds, config=replace(wf.config,
                                                                           seeds=(seed,)))

    merged = merge_results([part(0), part(1)])
    assert merged.config.seeds == (0, 1)
    assert merged.seed_metric("lgbm_reg") == pytest.approx(wf.seed_metric("lgbm_reg")[:2])
    assert len([r for r in merged.runs if r.kind == "baseline"]) == 6
    assert len(merged.fold_rank_ic) == 3 * 2 * 2 + 6 * 2


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
