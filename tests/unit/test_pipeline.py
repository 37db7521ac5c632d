"""Features are causal (the leakage guard, every family), labels look exactly h rows ahead,
macro values appear only from their release date, and the PIT join never reaches forward."""

import numpy as np
import pandas as pd
import pytest

from features.macro import load_macro_raw, macro_releases
from features.pipeline import (
    ALL_LABEL_COLUMNS,
    FAMILY_FEATURES,
    FEATURE_NAMES,
    FEATURES,
    RAY_MIN_ROWS,
    RAY_MIN_ROWS_COLD,
    adjusted,
    build_features_local,
    choose_engine,
    features_for_group,
    labels,
    market_features,
)
from features.sources import MARKET_TICKER
from training.data import point_in_time_join


def synthetic_bars(ticker="AAA", n=300, seed=0, start="2020-01-01"):
    rng = np.random.default_rng(seed)
    close = 50 * np.exp(np.cumsum(rng.normal(0, 0.02, n)))
    open_ = close * (1 + rng.normal(0, 0.005, n))
    high = np.maximum(open_, close) * (1 + rng.uniform(0, 0.01, n))
    low = np.minimum(open_, close) * (1 - rng.uniform(0, 0.01, n))
    ts = pd.bdate_range(start, periods=n, tz="UTC")
    return pd.DataFrame({"ticker": ticker, "ts": ts, "open": open_, "high": high, "low": low,
                         "close": close, "volume": rng.integers(1e5, 1e6, n).astype(float),
                         "adj_factor": 1.0, "source": "t", "ingested_at": ts[-1]})


def test_leakage_guard_future_data_never_moves_past_features():
    """Shift every price, volume and macro release after t (stocks, index, a ticker listed
    later): each feature of every family at or before t must stay bit-for-bit equal."""
    start = "2008-01-01"  # inside the packaged macro history, with a full SMA200 warm-up
    stocks = [synthetic_bars(t, n=700, seed=i, start=start)
              for i, t in enumerate(("AAA", "BBB", "CCC"))]
    bars = pd.concat([*stocks, synthetic_bars(MARKET_TICKER, n=700, seed=9, start=start)])
    raw = load_macro_raw()
    base = build_features_local(bars, macro=macro_releases(raw))
    days = pd.DatetimeIndex(base["ts"].sort_values().unique())
    # a cut early in a month: last month has ended but is not yet published
    t_cut = next(d for d in days[600:] if 3 <= d.day <= 12)
    assert base[base["ts"] <= t_cut][FEATURE_NAMES].notna().any().all()  # every family live

    shocked = bars.copy()
    after = shocked["ts"] > t_cut
    for col in ("open", "high", "low", "close"):
        shocked.loc[after, col] *= 1.5
    shocked.loc[after, "volume"] *= 7
    newcomer = synthetic_bars("NEW", n=60, seed=11, start=str((t_cut + pd.Timedelta(days=3))
                                                               .date()))
    shocked = pd.concat([shocked, newcomer], ignore_index=True)
    # Every macro value published after t_cut changes, including months that *ended* before
    # it (a period-end join would leak those).
    raw2 = load_macro_raw()
    rel = {k: v.reset_index(drop=True) for k, v in macro_releases(raw2).items()}
    ended_before_but_unpublished = 0
    for name, frame in raw2.items():
        late = (rel[name]["release_ts"] > t_cut).to_numpy()
        frame.loc[late, :] = frame.loc[late, :] * 1.3 + 1.0
        ended = (frame.index + pd.offsets.MonthEnd(0)).tz_localize("UTC") < t_cut
        ended_before_but_unpublished += int((late & ended).sum())
    assert ended_before_but_unpublished > 0
    moved = build_features_local(shocked, macro=macro_releases(raw2))

    def past(f):
        return (f[(f["ts"] <= t_cut) & (f["ticker"] != "NEW")]
                .sort_values(["ticker", "ts"])[FEATURE_NAMES].reset_index(drop=True))

    pd.testing.assert_frame_equal(past(base), past(moved))
    # ...and the shocks are visible afterwards, so the check above could fail
    fut_b = base[base["ts"] > t_cut].sort_values(["ticker", "ts"]).reset_index(drop=True)
    fut_m = moved[(moved["ts"] > t_cut) & (moved["ticker"] != "NEW")] \
        .sort_values(["ticker", "ts"]).reset_index(drop=True)
    for fam in ("technical", "market", "cross_sectional", "macro"):
        cols = FAMILY_FEATURES[fam]
        a, b = fut_b[cols].to_numpy(), fut_m[cols].to_numpy()
        assert not np.allclose(a, b, equal_nan=True), fam


def test_macro_is_joined_by_release_date_not_period_end():
    bars = pd.concat([synthetic_bars("AAA", n=40, start="2010-01-04"),
                      synthetic_bars(MARKET_TICKER, n=40, seed=2, start="2010-01-04")])
    f = build_features_local(bars).set_index("ts")
    rel = macro_releases()["core_cpi"].set_index("release_ts")
    dec09 = rel.loc[pd.Timestamp("2010-01-20", tz="UTC"), "core_cpi_yoy"]
    nov09 = rel.loc[pd.Timestamp("2009-12-20", tz="UTC"), "core_cpi_yoy"]
    assert dec09 != nov09
    # December 2009 ended on 12-31 but is published on 2010-01-20
    assert f.loc[pd.Timestamp("2010-01-19", tz="UTC"), "core_cpi_yoy"] == nov09
    assert f.loc[pd.Timestamp("2010-01-20", tz="UTC"), "core_cpi_yoy"] == dec09
    spread = macro_releases()["default"].set_index("release_ts")["default_spread"]
    assert f.loc[pd.Timestamp("2010-02-01", tz="UTC"), "default_spread"] == \
        spread[pd.Timestamp("2010-01-02", tz="UTC")]  # December's average, January's not yet
    assert f.loc[pd.Timestamp("2010-02-02", tz="UTC"), "default_spread"] == \
        spread[pd.Timestamp("2010-02-02", tz="UTC")]


def test_macro_goes_stale_rather_than_carried_forever():
    f = build_features_local(synthetic_bars("AAA", n=30, start="2020-01-01"))
    assert f[FAMILY_FEATURES["macro"]].isna().all().all()  # arch's data ends in 2018


def test_labels_are_forward_log_returns_and_directions_of_adjusted_close():
    b = synthetic_bars(n=30)
    b["adj_factor"] = 0.5
    lab = labels(b)
    c = b["close"].to_numpy() * 0.5
    assert lab["fwd_ret_5d"].iloc[3] == pytest.approx(np.log(c[8] / c[3]), rel=1e-12)
    assert lab["fwd_dir_5d"].iloc[3] == float(c[8] > c[3])
    assert set(lab["fwd_dir_1d"].dropna().unique()) <= {0.0, 1.0}
    assert np.isnan(lab["fwd_ret_1d"].iloc[-1]) and np.isnan(lab["fwd_dir_1d"].iloc[-1])
    assert lab["fwd_ret_20d"].iloc[:10].notna().all()
    assert lab[["fwd_ret_20d", "fwd_dir_20d"]].iloc[10:].isna().all().all()


def test_labels_are_not_features():
    assert not set(ALL_LABEL_COLUMNS) & set(FEATURE_NAMES)
    assert 30 <= len(FEATURE_NAMES) <= 50 and len(set(FEATURE_NAMES)) == len(FEATURE_NAMES)
    assert {f.family for f in FEATURES} == set(FAMILY_FEATURES)


def test_market_features_join_as_of_not_forward():
    stock = synthetic_bars("AAA", n=60)
    market = synthetic_bars(MARKET_TICKER, n=60, seed=3)
    market = market[market["ts"] != stock["ts"].iloc[40]]  # the index misses one day
    mf = market_features(market)
    out = features_for_group(stock, mf)
    prev_day = mf[mf["ts"] == stock["ts"].iloc[39]]["mkt_ret_1d"].item()
    assert out["mkt_ret_1d"].iloc[40] == prev_day  # the latest known value, not tomorrow's


def test_market_regimes_follow_trend_and_volatility():
    n = 600
    up = synthetic_bars(MARKET_TICKER, n=n, seed=1)
    up["close"] = 100 * np.exp(np.linspace(0, 1, n))  # a steady bull market
    calm_then_wild = np.r_[np.full(400, 0.001), np.full(200, 0.03)]
    rng = np.random.default_rng(0)
    up["close"] *= np.exp(np.cumsum(rng.normal(0, 1, n) * calm_then_wild))
    mf = market_features(up)
    assert np.isnan(mf["mkt_trend_regime"].iloc[198])  # SMA200 needs 200 bars
    assert mf["mkt_trend_regime"].iloc[300] == 1.0
    assert np.isnan(mf["mkt_vol_pct_252"].iloc[78]) and np.isfinite(mf["mkt_vol_pct_252"].iloc[79])
    # 30 days into the wild phase: above every calm day of the last year
    assert mf["mkt_vol_pct_252"].iloc[430] > 0.85 and mf["mkt_vol_regime"].iloc[430] == 2.0
    assert mf["mkt_vol_pct_252"].dropna().between(0, 1).all()


def test_cross_sectional_ranks_are_per_date_in_unit_interval():
    bars = pd.concat([synthetic_bars(t, n=80, seed=i) for i, t in enumerate("ABCD")])
    f = build_features_local(bars, macro=None)
    day = f[f["ts"] == f["ts"].iloc[50]]
    want = (day["ret_5d"].rank() - 1) / 3
    np.testing.assert_allclose(day["cs_rank_ret_5d"], want)
    cs = f[FAMILY_FEATURES["cross_sectional"]]
    assert cs.stack().between(0, 1).all()
    single = build_features_local(synthetic_bars("A", n=30), macro=None)
    assert (single["cs_rank_ret_1d"].dropna() == 0.5).all()


def test_calendar_and_gap_features():
    b = synthetic_bars("AAA", n=30, start="2024-01-01")
    b = b.drop(index=[5, 6, 7]).reset_index(drop=True)  # 2024-01-08..10 missing
    f = build_features_local(b, macro=None)
    row = f[f["ts"] == pd.Timestamp("2024-01-11", tz="UTC")].iloc[0]
    assert row["gap_days"] == 6 and row["missed_sessions"] == 3
    mon = f[f["ts"] == pd.Timestamp("2024-01-15", tz="UTC")].iloc[0]
    assert mon["gap_days"] == 3 and mon["missed_sessions"] == 0 and mon["day_of_week"] == 0
    assert mon["days_to_month_end"] == 16 and mon["month"] == 1


def test_volume_is_split_adjusted():
    b = synthetic_bars("AAA", n=60)
    b["volume"] = 1e6
    b.loc[30:, "volume"] = 2e6  # a 2:1 split on day 30: twice the shares trade...
    b.loc[30:, ["open", "high", "low", "close"]] /= 2  # ...at half the price
    b["adj_factor"] = np.where(np.arange(60) < 30, 0.5, 1.0)
    adj = adjusted(b)
    np.testing.assert_allclose(adj["volume"], 2e6)
    np.testing.assert_allclose(adj["close"] * adj["volume"], b["close"] * b["volume"]
                               * np.where(np.arange(60) < 30, 1, 1))
    f = build_features_local(b, macro=None)
    assert f["volume_z_20"].dropna().abs().max() == 0  # no phantom volume shock


def test_engine_auto_picks_by_measured_row_threshold():
    assert choose_engine("local", 10**9) == "local" and choose_engine("ray", 1) == "ray"
    assert choose_engine("auto", RAY_MIN_ROWS - 1) == "local"
    assert choose_engine("auto", RAY_MIN_ROWS) == "ray"
    # starting a cluster for it costs ~15 s more: a higher bar
    assert choose_engine("auto", RAY_MIN_ROWS, cluster_up=False) == "local"
    assert choose_engine("auto", RAY_MIN_ROWS_COLD, cluster_up=False) == "ray"
    with pytest.raises(ValueError):
        choose_engine("spark", 1)


def test_point_in_time_join_picks_latest_known_row_within_ttl():
    feats = pd.DataFrame({"ticker": ["A", "A", "A", "B"],
                          "ts": pd.to_datetime(["2024-01-01", "2024-01-03", "2024-01-20",
                                                "2024-01-02"], utc=True),
                          "f": [1.0, 3.0, 20.0, 2.0]})
    ents = pd.DataFrame({"ticker": ["A", "A", "B", "A"],
                         "ts": pd.to_datetime(["2024-01-04", "2024-01-03", "2024-01-01",
                                               "2024-01-15"], utc=True),
                         "y": [0.1, 0.2, 0.3, 0.4]})
    out = point_in_time_join(ents, feats)
    assert list(out["y"]) == [0.1, 0.2, 0.3, 0.4]  # original order kept
    f = out["f"].tolist()
    assert f[0] == 3.0 and f[1] == 3.0  # at or before, never the 01-20 row
    assert np.isnan(f[2])  # B's only row is after the entity time
    assert np.isnan(f[3])  # 12 days old: beyond the 7-day TTL


def test_point_in_time_join_equals_pandas_merge_asof_on_random_panels():
    rng = np.random.default_rng(4)
    days = pd.bdate_range("2020-01-01", periods=200, tz="UTC")
    feats = pd.concat([pd.DataFrame({"ticker": t, "ts": days[np.sort(rng.choice(200, 120,
                                                                               replace=False))]})
                       for t in "ABC"], ignore_index=True)
    feats["f"] = rng.normal(size=len(feats))
    ents = pd.DataFrame({"ticker": rng.choice(list("ABCD"), 500),
                         "ts": days[rng.integers(0, 200, 500)]
                         + pd.to_timedelta(rng.integers(0, 40, 500), unit="h")})
    ours = point_in_time_join(ents, feats)
    ref = pd.merge_asof(ents.assign(_r=range(500)).sort_values("ts"),
                        feats.rename(columns={"ts": "_ft"}).sort_values("_ft"),
                        left_on="ts", right_on="_ft", by="ticker", direction="backward",
                        tolerance=pd.Timedelta(days=7)).sort_values("_r")
    np.testing.assert_array_equal(ours["f"].to_numpy(), ref["f"].to_numpy())
