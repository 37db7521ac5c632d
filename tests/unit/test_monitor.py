"""Monitoring logic: realised outcomes of served forecasts, live metrics, drift, regime, and the
decisions on a planted market whose signal flips sign half-way."""

import numpy as np
import pandas as pd
import pytest

from training.drift import feature_drift, psi, regime, regime_changes
from training.monitor import Decision, MonitorRules, decide, live_metrics, realised

DAYS = pd.bdate_range("2025-01-01", periods=160, tz="UTC")
TICKERS = [f"T{i:02d}" for i in range(12)]


def _market(flip_at: int | None = 80, seed: int = 0):
    """Bars whose next-day return follows a signal s; forecasts served = the signal.
    After ``flip_at`` the market does the opposite of the signal."""
    rng = np.random.default_rng(seed)
    signal = rng.normal(0, 1, (len(DAYS), len(TICKERS)))
    sign = np.ones(len(DAYS))
    if flip_at is not None:
        sign[flip_at:] = -1.0
    ret = np.zeros_like(signal)
    ret[1:] = 0.004 * signal[:-1] * sign[:-1, None] + rng.normal(0, 0.01, signal[1:].shape)
    close = 100 * np.exp(np.cumsum(ret, axis=0))
    bars = pd.DataFrame({"ticker": np.tile(TICKERS, len(DAYS)),
                         "ts": np.repeat(DAYS, len(TICKERS)), "close": close.ravel(),
                         "adj_factor": 1.0})
    served = pd.DataFrame({
        "request_ts": np.repeat(DAYS + pd.Timedelta(hours=20), len(TICKERS)),
        "feature_ts": np.repeat(DAYS, len(TICKERS)), "ticker": np.tile(TICKERS, len(DAYS)),
        "horizon": 1, "pred": 0.004 * signal.ravel(), "lo": 0.004 * signal.ravel() - 0.013,
        "hi": 0.004 * signal.ravel() + 0.013, "alias": "champion", "model": "stockray-lgbm-h1",
        "version": "3"})
    return bars, served


def test_realised_outcomes_follow_the_label_definition():
    bars, served = _market(None)
    out = realised(pd.concat([served, served.iloc[:5]]), bars)  # repeats count once
    assert len(out) == (len(DAYS) - 1) * len(TICKERS)  # the last date has no outcome yet
    row = out.iloc[0]
    b = bars[bars.ticker == row.ticker].reset_index(drop=True)
    assert row.realised == pytest.approx(np.log(b.close[1] / b.close[0]))


def test_live_metrics_and_decisions_on_a_flipping_market():
    bars, served = _market(flip_at=80)
    out = realised(served, bars)
    rules = MonitorRules(window_dates=40, min_dates=20)
    before = live_metrics(out[out.date < pd.Timestamp("2025-04-01")], 40).iloc[0]
    assert before.rank_ic > 0.15 and before.coverage > 0.7
    d = decide(before.to_dict(), rules, validation_rank_ic=0.2)
    assert d.action == "none"
    # detection: the first day the rolling 40-date live RankIC breaks the floor after the flip
    fired = None
    for k in range(81, len(DAYS) - 1):
        live = live_metrics(out[out.date <= DAYS[k].tz_localize(None)], 40).iloc[0]
        d = decide(live.to_dict(), rules, validation_rank_ic=0.2)
        if d.action == "retrain":
            fired = k
            break
    assert fired is not None and fired - 80 <= 25, fired
    assert "decayed from validation" in d.reason
    assert decide({**live.to_dict(), "n_dates": 5}, rules).action == "wait"


def test_rollback_against_the_previous_champion():
    live = {"model": "m", "version": "4", "horizon": 5, "n_dates": 30, "rank_ic": 0.01}
    d = decide(live, MonitorRules(), previous_champion_ic=0.06)
    assert isinstance(d, Decision) and d.action == "rollback" and "0.0600" in d.reason
    assert decide(live, MonitorRules(), previous_champion_ic=0.02).action == "none"


def test_drift_psi_ks_and_regime():
    rng = np.random.default_rng(1)
    a = rng.normal(0, 1, 5000)
    assert psi(a, rng.normal(0, 1, 5000)) < 0.02
    assert psi(a, rng.normal(1.0, 1, 5000)) > 0.25
    ref = pd.DataFrame({"x": a, "y": rng.normal(0, 1, 5000)})
    cur = pd.DataFrame({"x": rng.normal(1.0, 1, 800), "y": rng.normal(0, 1, 800)})
    d = feature_drift(ref, cur, ["x", "y"])
    assert list(d.feature) == ["x", "y"] and list(d.shifted) == [True, False]
    assert d.ks_pvalue[0] < 1e-6 < d.ks_pvalue[1]
    days = pd.bdate_range("2024-01-01", periods=300)
    r = pd.Series(np.r_[rng.normal(0, 0.005, 150), rng.normal(0, 0.03, 150)], index=days)
    reg = regime(r)
    assert reg.state.iloc[:140].mean() < 0.1 and reg.state.iloc[160:].mean() > 0.9
    changes = regime_changes(reg.state)
    assert changes and abs(days.get_loc(changes[0]) - 150) <= 5
