"""The recent-window promotion criterion of decay retrains (`training.lifecycle.recent`)."""

import json

import numpy as np
import pandas as pd
import pytest

from training.lifecycle.recent import decay_segments, judge_recent, recent_rows

DATES = pd.bdate_range("2025-01-01", periods=120, tz="UTC")
TICKERS = [f"T{i:02d}" for i in range(15)]
FLIP = 70


def _frame(seed: int = 0) -> pd.DataFrame:
    """A panel whose next-day return follows the signal before `FLIP`, its opposite after;
    the last day has no label yet."""
    rng = np.random.default_rng(seed)
    n = len(DATES) * len(TICKERS)
    sig = rng.normal(0, 1, n)
    sign = np.where(np.repeat(np.arange(len(DATES)), len(TICKERS)) < FLIP, 1.0, -1.0)
    y = 0.01 * sig * sign + rng.normal(0, 0.01, n)
    f = pd.DataFrame({"ts": np.repeat(DATES, len(TICKERS)), "ticker": np.tile(TICKERS,
                                                                              len(DATES)),
                      "signal": sig, "ret_1d": rng.normal(0, 0.01, n), "fwd_ret_1d": y})
    f.loc[f.ts == DATES[-1], "fwd_ret_1d"] = np.nan
    return f


def _judge(rows, champion, challenger, **kw):
    args = {"margin": 0.02, "floor": 0.02, "min_sessions": 10, **kw}
    return judge_recent(rows, horizon=1, champion_pred=champion, challenger_pred=challenger,
                        **args)


def test_segments_count_back_from_the_end_with_purge_gaps():
    dates = DATES[:-1]  # label-complete
    seg = decay_segments(dates, horizon=2, window=20, train_sessions=30, valid_sessions=10)
    pos = {k: [dates.get_loc(pd.Timestamp(x, tz="UTC")) for x in v] for k, v in seg.items()}
    assert pos["test"] == [len(dates) - 20, len(dates) - 1]
    assert pos["valid"][1] == pos["test"][0] - 3 and pos["valid"][1] - pos["valid"][0] == 9
    assert pos["train"][1] == pos["valid"][0] - 3 and pos["train"][1] - pos["train"][0] == 29
    assert decay_segments(dates, horizon=2, window=20, train_sessions=0,
                          valid_sessions=10)["train"][0] == str(dates[0].date())
    with pytest.raises(ValueError, match="needs"):
        decay_segments(dates[:40], horizon=2, window=20, train_sessions=30, valid_sessions=10)


def test_promotes_a_challenger_that_is_better_on_the_recent_window():
    rows = recent_rows(_frame(), cutoff=DATES[90], horizon=1, window=20)
    j = _judge(rows, champion=rows.signal, challenger=-rows.signal)  # challenger learned flip
    assert j.promote, j.reason
    assert j.figures["challenger_rank_ic"] > 0.3 > -0.3 > j.figures["champion_rank_ic"]
    assert j.figures["n_sessions"] == 20 and "baseline_momentum_rank_ic" in j.figures
    assert "recent window holds" in j.reason and "margin 0.02" in j.reason


def test_refuses_when_the_champion_is_as_good_or_better():
    rows = recent_rows(_frame(), cutoff=DATES[90], horizon=1, window=20)
    j = _judge(rows, champion=-rows.signal, challenger=rows.signal)
    assert not j.promote and "does not beat the champion" in j.reason
    same = _judge(rows, champion=-rows.signal, challenger=-rows.signal)  # difference 0
    assert not same.promote and same.figures["difference"] == pytest.approx(0)


def test_refuses_below_the_floor_even_when_better_than_the_champion():
    rows = recent_rows(_frame(), cutoff=DATES[90], horizon=1, window=20)
    noise = np.random.default_rng(5).normal(0, 1, len(rows))
    j = _judge(rows, champion=rows.signal, challenger=noise, floor=0.2)
    assert j.figures["challenger_rank_ic"] - j.figures["champion_rank_ic"] > 0.02
    assert not j.promote and "below the floor" in j.reason
    # and the baselines: required, a challenger that does not beat them is refused
    k = _judge(rows, champion=rows.signal, challenger=noise, floor=-1.0,
               beat_baselines=True)
    assert k.figures["challenger_rank_ic"] < max(k.figures["baseline_momentum_rank_ic"],
                                                 k.figures["baseline_reversal_rank_ic"])
    assert not k.promote and "baseline" in k.reason


def test_too_few_post_cutoff_sessions_refuse():
    rows = recent_rows(_frame(), cutoff=DATES[110], horizon=1, window=20)
    j = _judge(rows, champion=rows.signal, challenger=-rows.signal)
    assert not j.promote and j.figures["n_sessions"] == 7 and "needs 10" in j.reason


def test_only_rows_after_the_cutoff_and_its_purge_count():
    f = _frame()
    f3 = f.assign(fwd_ret_3d=f.fwd_ret_1d)
    rows = recent_rows(f3, cutoff=DATES[60], horizon=3, window=200)
    # purge: the first judged date is 3 sessions after the day following the cut-off
    assert rows.ts.min() == DATES[64] and rows.fwd_ret_3d.notna().all()
    assert rows.ts.max() == DATES[-2] and rows.ts.nunique() == len(DATES) - 1 - 64
    # the rows before the cut-off change nothing: scramble them, the judgement is the same
    rows = recent_rows(f, cutoff=DATES[80], horizon=1, window=30)
    before = _judge(rows, champion=rows.signal, challenger=-rows.signal)
    g = f.copy()
    early = g.ts <= DATES[81]  # up to the cut-off and its 1-session purge
    g.loc[early, "fwd_ret_1d"] = -g.loc[early, "fwd_ret_1d"] * 7
    rows2 = recent_rows(g, cutoff=DATES[80], horizon=1, window=30)
    after = _judge(rows2, champion=rows2.signal, challenger=-rows2.signal)
    assert rows2.equals(rows) and json.dumps(before.figures) == json.dumps(after.figures)
    assert rows.ts.min() > DATES[81]
    # and the rows after it do: the judgement sees the post-cut-off market
    h = f.copy()
    h.loc[h.ts > DATES[81], "fwd_ret_1d"] *= -1
    rows3 = recent_rows(h, cutoff=DATES[80], horizon=1, window=30)
    assert not _judge(rows3, champion=rows3.signal, challenger=-rows3.signal).promote


def test_registry_promotes_by_the_judgement_and_records_it(tmp_path):
    import mlflow

    from features.settings import Settings
    from tests.flip_scenario import NAME, register
    from training.registry import JUDGEMENT_TAG, alias_version, promote_judged

    settings = Settings(data_dir=tmp_path / "d").resolved()
    uri = register(settings, tmp_path / "reg")  # v1 champion, v2 challenger
    no = promote_judged(uri, NAME, "2", ok=False, reason="worse", judgement={"promote": False})
    assert not no.promoted and alias_version(uri, NAME, "champion") == "1"
    client = mlflow.MlflowClient(tracking_uri=uri)
    assert json.loads(client.get_model_version(NAME, "2").tags[JUDGEMENT_TAG]) == {
        "promote": False}
    stale = promote_judged(uri, NAME, "1", ok=True, reason="x", judgement={})
    assert not stale.promoted and "no longer the challenger" in stale.reason
    yes = promote_judged(uri, NAME, "2", ok=True, reason="better",
                         judgement={"promote": True, "figures": {"challenger_rank_ic": 0.3}},
                         bundle_root=settings.models_dir)
    assert yes.promoted and alias_version(uri, NAME, "champion") == "2"
    assert alias_version(uri, NAME, "challenger") is None
    assert client.get_model_version(NAME, "2").tags["promotion_reason"] == "better"


def test_lifecycle_config_keys():
    from training.config import DEFAULT_CONFIG, LifecycleConfig, load_experiment

    lc = load_experiment(DEFAULT_CONFIG).lifecycle
    assert lc.decay_promotion == "recent_window" and lc.decay_window == 20
    assert lc == LifecycleConfig()  # the yaml documents the defaults
    with pytest.raises(ValueError, match="recent_window or walkforward"):
        LifecycleConfig(decay_promotion="latest")
