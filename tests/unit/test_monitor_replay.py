"""The monitor's rules replayed session by session on the planted flip market: nothing fires
before the flip, the retrain fires a bounded number of sessions after it, only outcomes known
on each day count, and the rollback rule fires against a better previous champion."""

import pytest

from tests.unit.test_monitor import DAYS, _market
from training.monitor import MonitorRules, live_metrics, realised
from training.monitor_replay import detection_delay, replay_decisions

SESSIONS = DAYS.tz_localize(None).normalize()


def test_retrain_fires_after_the_flip_only():
    bars, served = _market(flip_at=80)
    out = realised(served[served.feature_ts >= DAYS[20]], bars)
    rep = replay_decisions(out, SESSIONS, MonitorRules(), validation_rank_ic=0.2)
    assert set(rep[rep.k < 80].action) == {"wait", "none"}
    delay = detection_delay(rep, 80)
    assert delay is not None and 1 <= delay <= 30
    first = rep[rep.k == 80 + delay].iloc[0]
    assert first.action == "retrain" and first.live_rank_ic < 0.15
    # the day before, with the outcomes known then, the same rules said "none"
    assert rep[rep.k == 80 + delay - 1].iloc[0].action == "none"
    # no look-ahead: on session k the newest judged feature date is k - h, and the window's
    # RankIC is what `live_metrics` computes on the forecasts known then
    for k in (50, 80 + delay, 150):
        row = rep[rep.k == k].iloc[0]
        seen = out[out.date <= SESSIONS[k - 1]]
        live = live_metrics(seen, MonitorRules().window_dates).iloc[0]
        assert row.n_dates == live.n_dates == min(k - 1 - 20 + 1, 60)
        assert row.live_rank_ic == pytest.approx(live.rank_ic, abs=1e-12)


def test_no_flip_never_fires_and_rollback_against_previous_champion():
    bars, served = _market(flip_at=None)
    out = realised(served[served.feature_ts >= DAYS[20]], bars)
    rep = replay_decisions(out, SESSIONS, MonitorRules(), validation_rank_ic=0.2)
    assert detection_delay(rep, 0) is None
    bars, served = _market(flip_at=80)
    out = realised(served[served.feature_ts >= DAYS[80]], bars)  # served after the flip
    rep = replay_decisions(out, SESSIONS, MonitorRules(rollback_margin=0.02),
                           previous_champion_ic=0.15)
    d = detection_delay(rep, 80, actions=("rollback",))
    assert d is not None and rep[rep.action == "rollback"].iloc[0].k >= 80 + 20
    assert "previous champion's 0.1500 - margin 0.02" in \
        rep[rep.action == "rollback"].iloc[0].reason


def test_outcome_dates_must_be_sessions():
    bars, served = _market(flip_at=80)
    out = realised(served, bars)
    with pytest.raises(ValueError, match="calendar"):
        replay_decisions(out, SESSIONS[10:], MonitorRules())
    assert replay_decisions(out.iloc[:0], SESSIONS, MonitorRules()).empty
