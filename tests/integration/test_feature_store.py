"""Real Feast on local files: apply, materialize, online read, and our PIT training join equal
to Feast's own ``get_historical_features`` on a small sample."""

import numpy as np
import pandas as pd
import pytest

from features.pipeline import FEATURE_NAMES, build_features_local
from features.sources import MARKET_TICKER
from features.store import FeastOnlineReader, apply_repo, materialize, write_offline
from tests.unit.test_pipeline import synthetic_bars
from training.data import point_in_time_join

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def store_and_frame(tmp_path_factory):
    data = tmp_path_factory.mktemp("feast")
    bars = pd.concat([synthetic_bars("AAA", n=120), synthetic_bars("BBB", n=100, seed=5),
                      synthetic_bars(MARKET_TICKER, n=120, seed=9)])
    frame = build_features_local(bars)
    write_offline(frame, data / "offline")
    store = apply_repo(data, data / "offline")
    materialize(store, frame)
    return data, store, frame


def test_online_read_returns_latest_row_per_ticker(store_and_frame):
    data, _, frame = store_and_frame
    reader = FeastOnlineReader(str(data / "feast"))
    got = reader.read(["AAA", "BBB", "NOPE"])
    assert got["NOPE"] is None
    for t in ("AAA", "BBB"):
        last = frame[frame["ticker"] == t].iloc[-1]
        assert got[t]["feature_ts"] == pytest.approx(last["ts"].timestamp())
        for name in FEATURE_NAMES:
            assert got[t][name] == pytest.approx(last[name], nan_ok=True), name


def test_labels_are_not_served_online(store_and_frame):
    _, store, _ = store_and_frame
    with pytest.raises(Exception):
        store.get_online_features(features=["labels:fwd_ret_1d"],
                                  entity_rows=[{"ticker": "AAA"}]).to_dict()


def test_our_pit_join_equals_feast_historical_features(store_and_frame):
    _, store, frame = store_and_frame
    rng = np.random.default_rng(0)
    rows = frame.sample(40, random_state=1)[["ticker", "ts"]].reset_index(drop=True)
    # also entity times between sessions (weekends) and before any data
    shift = pd.to_timedelta(rng.integers(0, 3, len(rows)), unit="D")
    ents = rows.assign(ts=rows["ts"] + shift)
    ents.loc[0, "ts"] = pd.Timestamp("2019-06-01", tz="UTC")
    ents = ents.drop_duplicates(["ticker", "ts"]).reset_index(drop=True)
    want = store.get_historical_features(
        entity_df=ents.rename(columns={"ts": "event_timestamp"}),
        features=[f"daily_features:{n}" for n in FEATURE_NAMES]).to_df()
    want = want.rename(columns={"event_timestamp": "ts"}).sort_values(["ticker", "ts"])
    ours = point_in_time_join(ents, frame[["ticker", "ts", *FEATURE_NAMES]])
    assert ours.loc[0, FEATURE_NAMES].isna().all()  # the 2019 row found nothing
    ours = ours.iloc[1:].sort_values(["ticker", "ts"])
    # Feast's file store leaves out entity rows that match no feature row at all (here the
    # 2019 one, before any data); ours keeps them with NaN features. Everything else is equal.
    missing = ents.merge(want[["ticker", "ts"]], how="left", indicator=True)
    assert missing.loc[missing["_merge"] != "both", "ts"].tolist() == [ents.loc[0, "ts"]]
    assert len(want) == len(ents) - 1 > 30
    pd.testing.assert_frame_equal(
        ours[FEATURE_NAMES].reset_index(drop=True).astype(float),
        want[FEATURE_NAMES].reset_index(drop=True).astype(float), check_exact=False, rtol=1e-12)
