"""Text features through real Feast on local files: the shipped sample scored by a small real
scorer, `run_text_features` (offline file, apply, materialize), the online read of the opt-in
service, and Feast's own point-in-time join equal to ours."""

import numpy as np
import pandas as pd
import pytest

from features.settings import Settings
from features.text.build import run_text_features
from features.text.daily import TEXT_FEATURES, TEXT_TS
from features.text.fetch import NewsFetchConfig, run_news_fetch
from features.text.scoring import score_unscored
from features.text.views import TEXT_SERVICE, TEXT_TTL, TEXT_VIEW
from tests.text_fixtures import BowScorer
from training.data import point_in_time_join

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    settings = Settings(data_dir=tmp_path_factory.mktemp("text")).resolved()
    run_news_fetch(NewsFetchConfig("file"), settings, run_id="sample")
    score_unscored(settings.lake_dir, BowScorer.fit(), "bow@1")
    rep = run_text_features(settings, online=True, events=True, shock_threshold=0.3,
                            shock_min_count=1)
    return settings, rep, pd.read_parquet(rep.offline_file)


def test_service_serves_the_latest_text_row_per_ticker(built):
    settings, rep, frame = built
    assert rep.online_tickers == 4 and rep.rows == len(frame)
    from features.store import open_store

    store = open_store(settings.data_dir)
    service = store.get_feature_service(TEXT_SERVICE)
    got = store.get_online_features(features=service, entity_rows=[
        {"ticker": "AAPL"}, {"ticker": "NOPE"}]).to_dict()
    assert set(got) == {"ticker", *TEXT_FEATURES, TEXT_TS}
    assert got["news_count_1d"][1] is None  # no row for an unknown ticker
    last = frame[frame["ticker"] == "AAPL"].iloc[-1]
    for n in (*TEXT_FEATURES, TEXT_TS):
        v = got[n][0]
        assert (np.nan if v is None else v) == pytest.approx(last[n], nan_ok=True), n


def test_feast_historical_join_equals_ours(built):
    settings, _, frame = built
    from features.store import open_store

    store = open_store(settings.data_dir)
    rows = frame[frame["news_count_1d"] > 0].sample(30, random_state=2)[["ticker", "ts"]]
    ents = rows.assign(ts=rows["ts"] + pd.Timedelta(hours=12)).reset_index(drop=True)
    refs = [f"{TEXT_VIEW}:{n}" for n in TEXT_FEATURES]
    want = store.get_historical_features(
        entity_df=ents.rename(columns={"ts": "event_timestamp"}), features=refs).to_df()
    want = want.rename(columns={"event_timestamp": "ts"}).sort_values(["ticker", "ts"])
    ours = point_in_time_join(ents, frame[["ticker", "ts", *TEXT_FEATURES]], ttl=TEXT_TTL)
    ours = ours.sort_values(["ticker", "ts"])
    assert len(want) == len(ours) == 30
    pd.testing.assert_frame_equal(ours[list(TEXT_FEATURES)].reset_index(drop=True).astype(float),
                                  want[list(TEXT_FEATURES)].reset_index(drop=True).astype(float),
                                  check_exact=True)
    assert np.isfinite(ours["news_sent_mean_1d"]).all()


def test_shock_events_landed_in_the_events_table(built):
    settings, rep, _ = built
    from features.events import read_events

    ev = read_events(settings.data_dir)
    assert rep.events == len(ev) > 0 and set(ev["rule"]) == {"sentiment_shock"}


def test_a_second_build_keeps_the_repo_config(built):
    settings, _, _ = built
    cfg = settings.data_dir / "feast" / "feature_store.yaml"
    before = cfg.read_text()
    # An operator's own edit (e.g. `stockray features --online redis`) must survive.
    cfg.write_text(before + "# edited by the operator\n")
    rep = run_text_features(settings, online=True, events=False)
    assert rep.online_tickers == 4
    assert cfg.read_text().endswith("# edited by the operator\n")
