"""Bring your own universe, feature side: the market context derived from a universe without
an index (checked against an independent pandas computation), the out-of-range rule, and the
one missing-feature rule shared by training and serving."""

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.coverage import ALL_NAN, NAN_AT_LAST_DATE, select_features, summarize_names
from features.ingest import ingest
from features.pipeline import MARKET_FEATURES
from features.ranges import FEATURE_ABS_MAX, mask_out_of_range
from features.sources import FileSource
from features.stream import build_offline
from features.universe_index import derive_index_bars
from training.synthetic import make_market


def _lake(tmp_path, zero_volume: bool = False):
    bars = make_market(n_tickers=6, n_days=120, start="2022-01-03", seed=5).bars
    if zero_volume:  # volumes missing on most bars: no cap proxy
        bars = bars.assign(volume=np.where(np.arange(len(bars)) % 3 == 0, bars["volume"], 0.0))
    csv = tmp_path / "u.csv"
    bars.assign(date=bars["ts"].dt.strftime("%Y-%m-%d")).drop(columns="ts").to_csv(csv,
                                                                                   index=False)
    rep = ingest([FileSource(csv)], tmp_path / "bars", tmp_path / "quarantine")
    assert rep.rows_quarantined == 0
    return bars


def _expected_index(bars: pd.DataFrame, weighted: bool) -> pd.Series:
    wide = bars.pivot(index="ts", columns="ticker", values="adj_close")
    ret = (wide / wide.shift(1) - 1).clip(-0.5, 1.0)
    if weighted:
        dv = (bars.assign(dv=bars["close"] * bars["volume"].where(bars["volume"] > 0))
              .pivot(index="ts", columns="ticker", values="dv"))
        w = dv.shift(1).rolling(20, min_periods=1).mean()
    else:
        w = pd.DataFrame(1.0, index=ret.index, columns=ret.columns)
    w = w.where(ret.notna() & (w > 0))
    r = (ret * w).sum(axis=1) / w.sum(axis=1)
    return 100 * (1 + r.fillna(0.0)).cumprod()


@pytest.mark.parametrize("zero_volume", [False, True], ids=["cap", "equal"])
def test_universe_index_matches_an_independent_computation(tmp_path, zero_volume):
    bars = _lake(tmp_path, zero_volume)
    idx, info = derive_index_bars(tmp_path / "bars")
    want = _expected_index(bars, weighted=not zero_volume)
    got = idx.set_index("ts")["close"]
    np.testing.assert_allclose(got.to_numpy(), want.to_numpy(), rtol=1e-10)
    assert info["weighting"].startswith("equal" if zero_volume else "cap")
    assert info["tickers"] == 6 and info["dates"] == 120


def test_lake_without_index_gets_market_features_from_the_universe(tmp_path):
    _lake(tmp_path)
    out = build_offline(tmp_path / "bars", tmp_path / "offline", tmp_path / "work", macro=None)
    assert out.market_context["source"].startswith("derived from the universe")
    f = pd.read_parquet(tmp_path / "offline" / "features.parquet")
    last = f[f["ts"] == f["ts"].max()]
    # short windows are known on the last date for every ticker; the 200-day trend is not
    # (120 days of history): the coverage rule drops it below, instead of serving refusing it
    for name in ("mkt_ret_1d", "mkt_ret_5d", "mkt_vol_20"):
        assert last[name].notna().all(), name
    assert last["mkt_trend_200"].isna().all()
    fs = select_features(f, [*MARKET_FEATURES, "ret_1d"])
    assert fs.dropped["mkt_trend_200"] == ALL_NAN
    assert "mkt_ret_1d" in fs.kept and "ret_1d" in fs.kept
    assert not out.out_of_range  # clean synthetic data: nothing masked
    assert out.contract.rows_ok == 6 * 120  # the derived index is not counted as input


def test_out_of_range_values_become_nan_and_are_counted():
    frame = pd.DataFrame({"a": [1.0, np.inf, -np.inf, 2e30, -5.0, np.nan],
                          "b": [0.0, 1.0, 2.0, 3.0, FEATURE_ABS_MAX, -1.0]})
    counts = mask_out_of_range(frame, ["a", "b"])
    assert counts == {"a": 3}
    assert frame["a"].isna().sum() == 4 and frame["b"].notna().all()
    assert np.isfinite(frame[["a", "b"]].dropna().to_numpy(np.float32)).all()


def test_missing_feature_rule_and_summaries():
    ts = pd.to_datetime(["2024-01-02"] * 2 + ["2024-01-03"] * 2, utc=True)
    frame = pd.DataFrame({"ts": ts, "x": [1.0, 2.0, 3.0, np.nan], "allnan": np.nan,
                          "stale": [1.0, 2.0, np.nan, np.nan]})
    fs = select_features(frame, ["x", "allnan", "stale"])
    assert fs.kept == ["x"]
    assert fs.dropped == {"allnan": ALL_NAN, "stale": NAN_AT_LAST_DATE}
    with pytest.raises(ValueError, match="every one"):
        select_features(frame, ["allnan"])
    assert summarize_names([f"T{i}" for i in range(524)]) == "524 (T0, T1, T2, T3, T4, ...)"
    assert summarize_names(["A", "B"]) == "2 (A, B)"


def test_export_of_a_model_with_nan_splits_casts_nothing_out_of_range():
    # LightGBM splits "value vs NaN" at a 1e300 sentinel; the ONNX parity sample must not
    # spread over it (that was the 'overflow encountered in cast' at export)
    import warnings

    import lightgbm as lgb

    from training.export import export_bundle

    rng = np.random.default_rng(0)
    x = rng.standard_normal((400, 2))
    x[::2, 0] = np.nan
    y = np.where(np.isnan(x[:, 0]), 1.0, 0.0) + 0.1 * x[:, 1]
    booster = lgb.train({"objective": "regression", "min_data_in_leaf": 5, "verbose": -1,
                         "num_threads": 1}, lgb.Dataset(x, y), num_boost_round=5)
    thresholds = []

    def walk(n):
        if "split_feature" in n:
            thresholds.append(float(n["threshold"]))
            walk(n["left_child"])
            walk(n["right_child"])

    for t in booster.dump_model()["tree_info"]:
        walk(t["tree_structure"])
    assert max(abs(t) for t in thresholds) >= 1e300  # the sentinel is there
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        export_bundle(booster, ["a", "b"], Path(tempfile.mkdtemp()) / "b", model_name="m",
                      model_version="0", horizon=5)


def test_index_ticker_and_index_file_become_the_lake_index(tmp_path):
    from features.lake import list_tickers, read_bars
    from features.settings import Settings
    from features.sources import MARKET_TICKER
    from ray_apps.ingest import IngestConfig
    from ray_apps.ingest import main as ingest_main

    bars = make_market(n_tickers=3, n_days=30, start="2022-01-03", seed=2).bars
    csv = tmp_path / "u.csv"
    bars.assign(date=bars["ts"].dt.strftime("%Y-%m-%d")).drop(columns="ts").to_csv(csv,
                                                                                   index=False)
    s1 = Settings(data_dir=tmp_path / "a").resolved()
    rep = ingest_main(IngestConfig(files=[csv], index_ticker="syn001"), s1)
    assert not rep.failed
    assert list_tickers(s1.bars_dir) == sorted(["SYN000", "SYN002", MARKET_TICKER])
    idx = read_bars(s1.bars_dir, [MARKET_TICKER])
    want = bars[bars["ticker"] == "SYN001"]["close"].to_numpy()
    np.testing.assert_allclose(idx["close"].to_numpy(), want)

    one = tmp_path / "spx.csv"  # an index file without a ticker column
    bars[bars["ticker"] == "SYN002"].drop(columns="ticker").assign(
        date=lambda f: f["ts"].dt.strftime("%Y-%m-%d")).drop(columns="ts").to_csv(one,
                                                                                 index=False)
    s2 = Settings(data_dir=tmp_path / "b").resolved()
    rep = ingest_main(IngestConfig(files=[csv], index_file=one), s2)
    assert f"index:{one.name}" in rep.sources
    assert MARKET_TICKER in list_tickers(s2.bars_dir) and "SYN002" in list_tickers(s2.bars_dir)

    rep = ingest_main(IngestConfig(files=[csv], index_ticker="NOPE"),
                      Settings(data_dir=tmp_path / "c").resolved())
    assert "matched no row" in rep.failed["index:NOPE"]
    with pytest.raises(ValueError, match="go with --file"):
        ingest_main(IngestConfig(index_ticker="SPY"), Settings(data_dir=tmp_path / "d"))
