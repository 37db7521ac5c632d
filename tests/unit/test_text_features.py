"""Daily text features: the after-the-close rule, no look-ahead, the arithmetic of the
surprises, scoring the lake with a real (small) scorer, the sentiment_shock event rule, the
training join and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from features.events import read_events, write_events
from features.text.daily import (
    TEXT_FEATURES,
    assign_sessions,
    sentiment_shocks,
    session_close,
    sessions_for,
    text_features,
)
from features.text.records import read_news, write_news
from features.text.scoring import read_scores, score_unscored
from tests.text_fixtures import BowScorer
from training.data import join_text_features, point_in_time_join

UTC = "UTC"


@pytest.fixture(scope="module")
def scorer() -> BowScorer:
    return BowScorer.fit()


def _news(rows: list[tuple[str, str, str]], kind="news", form=None) -> pd.DataFrame:
    """(utc time, ticker, headline) -> news rows (ids by position)."""
    return pd.DataFrame({
        "id": [f"n{i}" for i in range(len(rows))],
        "ts": pd.to_datetime([r[0] for r in rows], utc=True),
        "tickers": [[r[1]] for r in rows], "headline": [r[2] for r in rows],
        "body": "", "kind": kind, "form": form})


def _probs(news: pd.DataFrame, p: list[list[float]]) -> pd.DataFrame:
    a = np.asarray(p, float)
    return pd.DataFrame({"id": news["id"], "p_negative": a[:, 0], "p_neutral": a[:, 1],
                         "p_positive": a[:, 2]})


def test_close_is_16_new_york_with_dst():
    c = session_close(pd.DatetimeIndex(["2024-01-05", "2024-07-05"]))
    assert list(c) == [pd.Timestamp("2024-01-05 21:00", tz=UTC),
                       pd.Timestamp("2024-07-05 20:00", tz=UTC)]


def test_after_close_weekend_and_holiday_count_for_the_next_session():
    # Bars skip Monday 2024-01-15 (a market holiday).
    bars = pd.DatetimeIndex(["2024-01-11", "2024-01-12", "2024-01-16", "2024-01-17"])
    days = sessions_for(bars, pd.Timestamp("2024-01-11 12:00", tz=UTC),
                        pd.Timestamp("2024-01-16 12:00", tz=UTC))
    ts = pd.Series(pd.to_datetime([
        "2024-01-12 20:59:59",  # Fri 15:59:59 NY -> Friday
        "2024-01-12 21:00:00",  # Fri 16:00:00 NY -> next session (Tuesday, after the holiday)
        "2024-01-13 15:00",     # Saturday -> Tuesday
        "2024-01-15 15:00",     # holiday Monday -> Tuesday
        "2024-01-16 20:59",     # Tue 15:59 -> Tuesday
    ], utc=True, format="mixed"))
    got = [days[i].date().isoformat() for i in assign_sessions(ts, days)]
    assert got == ["2024-01-12", "2024-01-16", "2024-01-16", "2024-01-16", "2024-01-16"]


def _random_news(rng, n=400, start="2024-01-02", days=90):
    t0 = pd.Timestamp(start, tz=UTC)
    ts = t0 + pd.to_timedelta(rng.integers(0, days * 24 * 60, n), unit="min")
    tick = rng.choice(["AAPL", "MSFT"], n)
    news = pd.DataFrame({"id": [f"r{i}" for i in range(n)], "ts": ts,
                         "tickers": [[t] for t in tick], "kind": "news", "form": None})
    p = rng.dirichlet([1, 1, 1], n)
    return news.sort_values("ts").reset_index(drop=True), _probs(news, p.tolist())


def test_no_look_ahead_rows_before_a_cutoff_ignore_later_text():
    rng = np.random.default_rng(3)
    news, scores = _random_news(rng)
    full = text_features(news, scores)
    cut = pd.Timestamp("2024-02-20 21:00", tz=UTC)  # the 16:00 close of 2024-02-20
    # (a) drop everything published at or after the cut
    early = news[news["ts"] < cut]
    trunc = text_features(early, scores[scores["id"].isin(early["id"])])
    # (b) keep it but change its scores and add a burst of extra text after the cut
    later = news["ts"] >= cut
    flipped = scores.copy()
    flipped.loc[flipped["id"].isin(news.loc[later, "id"]), ["p_negative", "p_positive"]] = [
        0.98, 0.01]
    extra = pd.DataFrame({"id": ["x1", "x2"], "ts": [cut, cut + pd.Timedelta(hours=30)],
                          "tickers": [["AAPL"], ["MSFT"]], "kind": "news", "form": None})
    pert = text_features(pd.concat([news, extra]),
                         pd.concat([flipped, _probs(extra, [[1, 0, 0], [1, 0, 0]])]))
    known = full["text_asof_ts"] <= cut
    assert known.sum() > 50 and (~known).sum() > 20
    for other in (trunc, pert):
        a = full[known].reset_index(drop=True)
        b = other[other["text_asof_ts"] <= cut].reset_index(drop=True)
        pd.testing.assert_frame_equal(a, b)
    # ...and the rows after the cut did move, so the check could fail.
    assert not np.allclose(full.loc[~known, "news_sent_mean_1d"].fillna(0),
                           pert[pert["text_asof_ts"] > cut]["news_sent_mean_1d"].fillna(0))


def test_feature_arithmetic_by_hand():
    # One ticker, three weekdays; scores chosen so every value is easy to check.
    rows = [("2024-03-04 15:00", "IBM", "a"), ("2024-03-04 22:00", "IBM", "b"),   # Mon, Mon late
            ("2024-03-05 14:00", "IBM", "c"), ("2024-03-06 14:00", "IBM", "d")]
    news = _news(rows)
    scores = _probs(news, [[0.7, 0.2, 0.1], [0.1, 0.1, 0.8], [0.2, 0.2, 0.6],
                           [0.3, 0.4, 0.3]]).iloc[:3]  # "d" is not scored yet
    f = text_features(news, scores).set_index("ts")
    mon, tue, wed = (pd.Timestamp(d, tz=UTC) for d in ("2024-03-04", "2024-03-05", "2024-03-06"))
    assert f.at[mon, "news_count_1d"] == 1 and f.at[tue, "news_count_1d"] == 2
    assert f.at[mon, "news_sent_mean_1d"] == pytest.approx(-0.6)
    assert f.at[tue, "news_sent_mean_1d"] == pytest.approx((0.7 + 0.4) / 2)
    assert f.at[tue, "news_pos_share_1d"] == 1.0 and f.at[mon, "news_neg_share_1d"] == 1.0
    assert f.at[wed, "news_count_1d"] == 1 and np.isnan(f.at[wed, "news_sent_mean_1d"])
    # 5-session mean pools records, not days: (-0.6 + 0.7 + 0.4) / 3 on Tuesday.
    assert f.at[tue, "news_sent_mean_5d"] == pytest.approx(0.5 / 3)
    assert np.isnan(f.at[tue, "news_sent_surprise"])  # < 5 sessions of baseline yet
    assert f.at[tue, "text_asof_ts"] == pd.Timestamp("2024-03-05 21:00", tz=UTC)
    assert f.index.max() == wed  # no rows for sessions no record has reached


def test_surprise_against_a_30_session_baseline_and_filing_flags():
    days = pd.bdate_range("2024-04-01", periods=12)
    rows = [(f"{d.date()} 14:00", "AAPL", f"h{i}") for i, d in enumerate(days)]
    news = _news(rows)
    daily = np.linspace(-0.5, 0.6, len(days))  # sentiment of each day's one record
    p = [[(1 - s) / 2, 0.0, (1 + s) / 2] for s in daily]
    f = text_features(news, _probs(news, p))
    i = 10
    assert f["news_sent_surprise"].iloc[i] == pytest.approx(daily[i] - daily[:i].mean())
    cnt = f["news_count_surprise"].iloc[i]
    assert cnt == pytest.approx(0.0)  # one record a day, every day: no count surprise
    filings = _news([("2024-04-02 22:00", "AAPL", "8-K")], kind="filing", form="8-K")
    g = text_features(filings, _probs(filings, [[0.2, 0.6, 0.2]])).set_index("ts")
    assert g.at[pd.Timestamp("2024-04-03", tz=UTC), "filing_8k_1d"] == 1.0
    assert g["filing_periodic_1d"].sum() == 0


def test_scoring_the_lake_with_a_real_scorer(tmp_path, scorer):
    lake = tmp_path / "lake"
    rows = [("2024-01-02 15:00", "AAPL", "Apple beats estimates and raises guidance"),
            ("2024-01-03 15:00", "MSFT", "Microsoft misses estimates and cuts its outlook"),
            ("2024-01-04 15:00", "IBM", "IBM schedules its quarterly earnings call")]
    n = _news(rows).assign(source="t", url=None, content_hash=[f"h{i}" for i in range(3)],
                           provider="t", ingested_at=pd.Timestamp("2024-02-01", tz=UTC))
    write_news(n, lake)
    rep = score_unscored(lake, scorer, "bow@1", batch_size=2)
    assert (rep.unscored, rep.scored) == (3, 3)
    s = read_scores(lake, "bow@1").set_index("id")
    p = s[["p_negative", "p_neutral", "p_positive"]].to_numpy()
    assert np.allclose(p.sum(1), 1) and list(p.argmax(1)) == [2, 0, 1]
    assert score_unscored(lake, scorer, "bow@1").scored == 0  # idempotent
    assert score_unscored(lake, scorer, "bow@2", limit=1).scored == 1  # a new model rescores

    class Labelled:  # a scorer answering a frame with named columns in another order
        def score(self, texts):
            p = scorer.score(texts)
            return pd.DataFrame({"positive": p[:, 2], "negative": p[:, 0], "neutral": p[:, 1],
                                 "label": "x"})
    score_unscored(lake, Labelled(), "labelled")
    pd.testing.assert_frame_equal(
        read_scores(lake, "labelled").set_index("id")[["p_negative", "p_neutral", "p_positive"]],
        s[["p_negative", "p_neutral", "p_positive"]], check_exact=False)

    class Broken:
        def score(self, texts):
            return np.ones((len(texts), 2))
    with pytest.raises(ValueError, match="shape"):
        score_unscored(lake, Broken(), "broken")
    assert read_scores(lake, "broken").empty


def test_sentiment_shock_is_an_event_record_like_the_streams(tmp_path, scorer):
    days = pd.bdate_range("2024-05-01", periods=9)
    rows = [(f"{d.date()} 14:00", "MSFT", "Microsoft schedules its quarterly earnings call")
            for d in days[:8]]
    bad = ["Microsoft misses revenue estimates and cuts its outlook",
           "Microsoft faces a regulatory probe", "Microsoft warns of lower margins"]
    rows += [(f"{days[8].date()} {h}:00", "MSFT", t) for h, t in zip((13, 14, 15), bad,
                                                                      strict=True)]
    news = _news(rows)
    scores = _probs(news, scorer.score(news["headline"].tolist()).tolist())
    f = text_features(news, scores)
    ev = sentiment_shocks(f, news, threshold=0.3, min_count=3)
    assert len(ev) == 1 and ev["rule"].iloc[0] == "sentiment_shock"
    assert ev["ts"].iloc[0] == pd.Timestamp(f"{days[8].date()} 15:00", tz=UTC)
    assert ev["value"].iloc[0] < -0.3
    write_events(ev, tmp_path)
    pd.testing.assert_frame_equal(read_events(tmp_path)[["event_id", "rule", "ticker"]],
                                  ev[["event_id", "rule", "ticker"]])
    assert sentiment_shocks(f, news, threshold=5.0).empty


def test_text_features_join_training_rows_point_in_time(tmp_path):
    from features.text.views import write_text_offline

    rows = [("2024-03-04 15:00", "IBM", "a"), ("2024-03-05 22:00", "IBM", "b")]
    news = _news(rows)
    f = text_features(news, _probs(news, [[0.8, 0.1, 0.1], [0.1, 0.1, 0.8]]))
    write_text_offline(f, tmp_path)
    labels = pd.DataFrame({"ticker": "IBM", "ts": pd.to_datetime(
        ["2024-03-04", "2024-03-05", "2024-03-06", "2024-04-01"], utc=True),
        "fwd_ret_1d": [0.1, 0.2, 0.3, 0.4]})
    got = join_text_features(labels, tmp_path)
    assert list(got.columns) == ["ticker", "ts", "fwd_ret_1d", *TEXT_FEATURES]
    # Tuesday's row must not see the article published after Tuesday's close.
    assert got["news_count_1d"].tolist()[:3] == [1.0, 0.0, 1.0]
    assert got["news_sent_mean_1d"].iloc[2] == pytest.approx(0.7)
    assert np.isnan(got["news_count_1d"].iloc[3])  # beyond the view's 7-day TTL
    direct = point_in_time_join(labels, f[["ticker", "ts", *TEXT_FEATURES]])
    pd.testing.assert_frame_equal(got, direct, check_dtype=False)


def test_cli_score_and_features_end_to_end(tmp_path, scorer):
    from ray_apps.cli import app

    data = str(tmp_path / "d")
    bundle = scorer.save(tmp_path / "bow.json")
    runner = CliRunner()
    r = runner.invoke(app, ["--data-dir", data, "news", "fetch", "--provider", "file"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["--data-dir", data, "news", "score", "--bundle", str(bundle),
                            "--scorer-factory", "tests.text_fixtures:BowScorer.from_bundle"])
    assert r.exit_code == 0 and "scored 240 of 240" in r.output, r.output
    r = runner.invoke(app, ["--data-dir", data, "news", "features", "--no-online"])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.output)
    assert rep["scored"] == rep["records"] == 240 and rep["tickers"] == ["AAPL", "GOOG", "IBM",
                                                                        "MSFT"]
    off = pd.read_parquet(rep["offline_file"])
    assert off["news_count_1d"].sum() == 240 and off["news_sent_mean_1d"].notna().sum() > 100
    assert len(read_news(tmp_path / "d" / "lake")) == 240
    r = runner.invoke(app, ["--data-dir", data, "news", "score", "--bundle", str(bundle),
                            "--scorer-factory", "no_such_module:X"])
    assert r.exit_code == 2 and "cannot import" in r.output


def test_lightgbm_finds_a_planted_text_signal_and_shap_credits_it(tmp_path):
    """Text features through the training join into LightGBM on a time-ordered split: a
    planted post-news drift is found out of sample, and SHAP gives the sentiment feature
    the largest attribution (the model sees text like any other feature)."""
    import lightgbm as lgb
    import shap

    from features.text.views import write_text_offline

    rng = np.random.default_rng(7)
    days = pd.bdate_range("2023-01-02", periods=300)
    rows, probs, labels = [], [], []
    for t in ("AAA", "BBB"):
        for d in days:
            s = rng.uniform(-1, 1)  # the session's tone, published before the close
            for k in range(2):
                rows.append((f"{d.date()} {14 + k}:00", t, "x"))
                probs.append([(1 - s) / 2, 0.0, (1 + s) / 2])
            labels.append({"ticker": t, "ts": pd.Timestamp(d, tz=UTC),
                           "fwd_ret_1d": 0.01 * s + rng.normal(0, 0.01)})
    news = _news(rows)
    news["tickers"] = [[r[1]] for r in rows]
    write_text_offline(text_features(news, _probs(news, probs)), tmp_path)
    frame = join_text_features(pd.DataFrame(labels), tmp_path).sort_values(["ts", "ticker"])
    cols = list(TEXT_FEATURES)
    cut = days[200].tz_localize(UTC)
    train, test = frame[frame["ts"] < cut], frame[frame["ts"] >= cut]
    model = lgb.train({"objective": "regression", "verbose": -1, "num_leaves": 7,
                       "min_data_in_leaf": 20, "seed": 1},
                      lgb.Dataset(train[cols], train["fwd_ret_1d"]), num_boost_round=60)
    pred = model.predict(test[cols])
    y = test["fwd_ret_1d"].to_numpy()
    ic = np.corrcoef(pred, y)[0, 1]
    mse, mse_naive = np.mean((pred - y) ** 2), np.mean((train["fwd_ret_1d"].mean() - y) ** 2)
    assert ic > 0.4 and mse < 0.9 * mse_naive  # beats the train-mean baseline out of sample
    contrib = np.abs(shap.TreeExplainer(model).shap_values(test[cols])).mean(axis=0)
    assert cols[int(contrib.argmax())] in ("news_sent_mean_1d", "news_sent_mean_5d",
                                           "news_pos_share_1d", "news_neg_share_1d")
    assert contrib[cols.index("news_sent_mean_1d")] > 0
