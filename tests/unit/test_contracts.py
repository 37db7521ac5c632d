"""The bars contract (pandera) on the lake, outlier jumps cross-checked against the index, and
the per-run data-quality report."""

import json

import numpy as np
import pandas as pd

from features.contracts import (
    check_bars,
    data_quality_report,
    describe_report,
    flag_jumps,
    write_report,
)
from features.pipeline import ALL_LABEL_COLUMNS, FEATURE_NAMES, build_features_local
from features.sources import MARKET_TICKER
from tests.unit.test_pipeline import synthetic_bars


def _market(n=200, seed=0):
    return pd.concat([synthetic_bars("AAA", n=n, seed=seed),
                      synthetic_bars("BBB", n=n, seed=seed + 1),
                      synthetic_bars(MARKET_TICKER, n=n, seed=seed + 2)], ignore_index=True)


def test_clean_bars_pass_untouched():
    bars = _market()
    res = check_bars(bars, run_id="r")
    assert res.quarantine.empty and res.by_rule == {} and res.non_monotonic_ts == 0
    assert len(res.bars) == len(bars)


def test_contract_violations_are_quarantined_with_reasons():
    bars = _market()
    bars.loc[3, "high"] = bars.loc[3, "low"] * 0.5  # high below low
    bars.loc[7, "volume"] = -5.0
    bars.loc[9, "close"] = 0.0
    bars.loc[11, "adj_factor"] = -1.0
    dup = bars.iloc[[20]]
    bars = pd.concat([bars, dup], ignore_index=True)
    res = check_bars(bars, run_id="run-1")
    assert res.by_rule == {"ohlc_consistency": 1, "non_negative_volume": 1,
                           "positive_price": 1, "positive_adj_factor": 1, "duplicate": 1}
    q = res.quarantine.set_index("rule")
    assert "volume -5.0 < 0" in q.loc["non_negative_volume", "reason"]
    assert "appears more than once" in q.loc["duplicate", "reason"]
    assert (res.quarantine["run_id"] == "run-1").all()
    assert json.loads(q.loc["ohlc_consistency", "raw"])["ticker"] == "AAA"
    assert len(res.bars) == len(bars) - 5
    assert not res.bars.duplicated(["ticker", "ts"]).any()


def test_out_of_order_dates_are_counted_and_sorted():
    bars = _market()
    bars = pd.concat([bars.iloc[:50].iloc[::-1], bars.iloc[50:]], ignore_index=True)
    res = check_bars(bars, run_id="r")
    assert res.non_monotonic_ts == 49 and res.quarantine.empty
    assert res.bars.groupby("ticker")["ts"].apply(lambda s: s.is_monotonic_increasing).all()


def test_idiosyncratic_jump_flagged_market_wide_jump_not():
    bars = _market(n=200)
    t_idio = bars["ts"].iloc[120]
    t_mkt = bars["ts"].iloc[150]
    for t, tickers in ((t_idio, ["AAA"]), (t_mkt, ["AAA", MARKET_TICKER])):
        sel = bars["ticker"].isin(tickers) & (bars["ts"] >= t)
        bars.loc[sel, ["open", "high", "low", "close"]] *= 1.4  # +34% log move that day
    flags, market_wide = flag_jumps(bars)
    assert list(zip(flags["ticker"], flags["ts"], strict=True)) == [("AAA", t_idio)]
    assert market_wide == 1
    assert "while the index moved" in flags["reason"].iloc[0]
    res = check_bars(bars, run_id="r")
    assert len(res.jumps) == 1 and res.market_wide_jumps == 1
    assert len(res.bars) == len(bars)  # flagged, never dropped


def test_data_quality_report_is_written_and_summarised(tmp_path, capsys):
    bars = _market()
    bars.loc[5, "volume"] = -1.0
    res = check_bars(bars, run_id="features-x")
    frame = build_features_local(res.bars, macro=None)
    rep = data_quality_report(run_id="features-x", contract=res, frame=frame,
                              engine={"engine": "local", "seconds": 0.1},
                              feature_names=FEATURE_NAMES, label_columns=ALL_LABEL_COLUMNS)
    path = write_report(rep, tmp_path)
    got = json.loads(path.read_text())
    assert got == json.loads((tmp_path / "data_quality" / "latest.json").read_text())
    assert got["contract"]["rows_quarantined"] == 1
    assert got["features"]["rows"] == len(frame) and set(got["labels"]) == set(ALL_LABEL_COLUMNS)
    assert 0 <= got["features"]["nan_fraction"]["sma_ratio_50"] < 1
    text = describe_report(got)
    assert "1 quarantined" in text and "outlier jumps" in text
    assert np.isfinite(got["engine"]["seconds"])
