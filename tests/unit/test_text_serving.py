"""The text inputs' one fill rule (training and serving), the bundle's feature set, and the
lookup / service reading the text service only for models that ask for it (no Ray, no Feast:
a fake store; `tests/integration/test_text_serve.py` runs the real stack)."""

from __future__ import annotations

import asyncio

import numpy as np
import pandas as pd
import pytest

from features.text.daily import TEXT_FEATURES, TEXT_TS
from features.text.fill import (
    HAS_TEXT,
    TEXT_FILL_RULE,
    TEXT_MODEL_FEATURES,
    check_fills,
    feature_set_entry,
    fill_text_frame,
    fill_text_values,
    text_row_usable,
)
from features.text.views import TEXT_SERVICE, write_text_offline
from serving.errors import FeaturesUnavailableError, InvalidRequestError
from serving.lookup import FeatureLookup
from serving.models import ModelSource, resolve_bundles
from serving.modelset import ServedModels
from serving.protos import stockray_pb2 as pb
from serving.scorer import bundle_services
from serving.service import LocalStages, PredictionService
from tests.serving_fixtures import FEATURE_TS, FEATURES, FakeReader, synthetic_rows
from training.data import join_text_features
from training.text_inputs import model_inputs

DAY = 86400.0


def _text_row(day_ts: float, **vals) -> dict:
    """An online text row of the session starting ``day_ts`` (close 16:00 NY = 21:00 UTC)."""
    row = dict.fromkeys(TEXT_FEATURES, float("nan"))
    row.update(vals)
    row[TEXT_TS] = day_ts + 21 * 3600
    return row


def test_fill_frame_zero_fills_and_flags_text_days():
    f = pd.DataFrame({"ticker": ["A", "A", "A"], "ts": pd.to_datetime(
        ["2024-01-02", "2024-01-03", "2024-01-04"], utc=True)})
    for c in TEXT_FEATURES:
        f[c] = np.nan
    f.loc[1, ["news_count_1d", "news_sent_mean_1d", "filing_8k_1d"]] = [3.0, -0.4, 1.0]
    f.loc[2, ["news_count_1d", "news_sent_mean_5d"]] = [0.0, 0.2]  # quiet day, 5d mean known
    out = fill_text_frame(f)
    assert out[HAS_TEXT].tolist() == [0.0, 1.0, 0.0]
    assert out.loc[1, "news_sent_mean_1d"] == -0.4 and out.loc[1, "filing_8k_1d"] == 1.0
    assert out.loc[2, "news_sent_mean_5d"] == 0.2  # values that exist are kept
    assert not out[list(TEXT_MODEL_FEATURES)].isna().any().any()
    assert (out.loc[0, list(TEXT_MODEL_FEATURES)] == 0.0).all()  # no text row: all zero
    assert f["news_count_1d"].isna().sum() == 1  # the input is not modified


def test_served_text_row_counts_only_within_the_ttl_and_not_ahead():
    d = FEATURE_TS  # a session, midnight UTC
    assert text_row_usable(d + 21 * 3600, d)  # same session (its close is later that day)
    assert text_row_usable(d - 7 * DAY + 20 * 3600, d)  # a week old: the view's TTL
    assert not text_row_usable(d - 8 * DAY + 21 * 3600, d)  # older: no text, as in training
    assert not text_row_usable(d + DAY + 21 * 3600, d)  # the next session's text: not yet
    assert not text_row_usable(float("nan"), d) and not text_row_usable(None, d)
    price = {"ret_1d": 0.01}
    got = fill_text_values({**price, **_text_row(d - 9 * DAY, news_count_1d=4.0)}, d)
    assert got[HAS_TEXT] == 0.0 and got["news_count_1d"] == 0.0 and TEXT_TS not in got
    got = fill_text_values({**price, **_text_row(d, news_count_1d=2.0,
                                                 news_sent_mean_1d=0.5)}, d)
    assert got[HAS_TEXT] == 1.0 and got["news_sent_mean_1d"] == 0.5
    assert got["news_sent_surprise"] == 0.0 and got["ret_1d"] == 0.01
    assert fill_text_values(price, d) == {**price, **dict.fromkeys(TEXT_MODEL_FEATURES, 0.0)}


def test_training_join_and_serving_fill_agree(tmp_path):
    """The same text row reaches a model identically through the training join + fill and
    through the online row + serving's fill (for the row's session, a week later, and
    after the TTL)."""
    days = pd.to_datetime(["2024-04-29", "2024-04-30", "2024-05-01"], utc=True)
    text = pd.DataFrame({"ticker": "A", "ts": days, TEXT_TS: days + pd.Timedelta(hours=20)})
    rng = np.random.default_rng(0)
    for c in TEXT_FEATURES:
        text[c] = rng.standard_normal(3)
    text.loc[2, "news_sent_surprise"] = np.nan  # undefined surprise on the last session
    write_text_offline(text, tmp_path)
    stored = pd.read_parquet(tmp_path / "text_features.parquet")
    last = stored.iloc[-1]
    online = {c: float(last[c]) for c in (*TEXT_FEATURES, TEXT_TS)}
    for lag_days in (0, 7, 8):
        ts = days[-1] + pd.Timedelta(days=lag_days)
        trained = fill_text_frame(join_text_features(
            pd.DataFrame({"ticker": ["A"], "ts": [ts]}), tmp_path)).iloc[0]
        served = fill_text_values(online, ts.value / 1e9)
        for c in TEXT_MODEL_FEATURES:
            assert served[c] == pytest.approx(float(trained[c]), abs=1e-12), (lag_days, c)
    assert served[HAS_TEXT] == 0.0  # lag 8: past the TTL on both sides


def test_model_inputs_record_services_and_fills(tmp_path):
    from features.pipeline import FEATURE_NAMES

    ts = pd.to_datetime(["2024-05-01", "2024-05-02"], utc=True)
    frame = pd.DataFrame({"ticker": ["A", "A"], "ts": ts, **{n: [0.1, 0.2] for n in
                                                             FEATURE_NAMES}})
    text = pd.DataFrame({"ticker": ["A"], "ts": ts[:1], TEXT_TS: ts[:1], **{
        c: [1.0] for c in TEXT_FEATURES}})
    write_text_offline(text, tmp_path)
    f0, fs0, entry0 = model_inputs(frame, tmp_path, text=False)
    assert fs0.kept == list(FEATURE_NAMES) and "services" not in entry0 and f0 is frame
    f1, fs1, entry1 = model_inputs(frame, tmp_path, text=True)
    assert fs1.kept == [*FEATURE_NAMES, *TEXT_MODEL_FEATURES]
    assert entry1["services"] == [TEXT_SERVICE]
    assert entry1["fills"] == {TEXT_SERVICE: TEXT_FILL_RULE}
    assert entry1["text_coverage"] == {"rows": 2, "rows_with_text": 2}  # both within the TTL
    assert f1[HAS_TEXT].tolist() == [1.0, 1.0]


def test_bundle_services_checks_the_fill_rule():
    fs = {"kept": [], "services": [TEXT_SERVICE], "fills": {TEXT_SERVICE: TEXT_FILL_RULE}}
    assert bundle_services({"extra": {"feature_set": fs}}) == (TEXT_SERVICE,)
    assert bundle_services({"extra": {"feature_set": {"kept": ["a"]}}}) == ()
    assert bundle_services({}) == ()
    with pytest.raises(ValueError, match="text_fill_v0"):
        bundle_services({"extra": {"feature_set": {**fs, "fills": {TEXT_SERVICE:
                                                                   "text_fill_v0"}}}})
    with pytest.raises(ValueError, match="without a fill rule"):
        bundle_services({"extra": {"feature_set": {**fs, "fills": {}}}})
    with pytest.raises(ValueError, match="no_such_service"):
        check_fills({"no_such_service": TEXT_FILL_RULE})


class ServiceReader(FakeReader):
    """A fake store with an opt-in text service: ``with_services`` adds its columns."""

    def __init__(self, rows, text_rows, registered: bool = True, **kw):
        super().__init__(rows, **kw)
        self.text_rows, self.registered, self.asked = text_rows, registered, []

    def with_services(self, services):
        self.asked.append(tuple(services))
        if not self.registered:  # like Feast before `stockray news features`
            raise KeyError(f"FeatureService {services[0]} not found")
        outer = self

        class Extended(FakeReader):
            def read(self, tickers):
                rows = outer.read(tickers)
                return {t: None if r is None else {**r, **outer.text_rows.get(t, {})}
                        for t, r in rows.items()}
        return Extended({})


def test_lookup_reads_services_only_when_asked_and_learns_them_late():
    rows = synthetic_rows()
    text = {"AAPL": _text_row(FEATURE_TS, news_count_1d=2.0, news_sent_mean_1d=0.3)}
    reader = ServiceReader(rows, text, registered=False)
    lookup = FeatureLookup(reader, ttl_s=60)
    plain = lookup.get("AAPL")
    assert HAS_TEXT not in plain.values and reader.asked == []
    # the service is not registered yet: a clear error, not a crash, and no poisoned state
    got = lookup.get_many(["AAPL"], (TEXT_SERVICE,))["AAPL"]
    assert isinstance(got, FeaturesUnavailableError) and "news features" in got.message
    reader.registered = True  # `stockray news features` ran: the same replica picks it up
    a, m = (lookup.get_many(["AAPL", "MSFT"], (TEXT_SERVICE,))[t] for t in ("AAPL", "MSFT"))
    assert a.values[HAS_TEXT] == 1.0 and a.values["news_sent_mean_1d"] == 0.3
    assert m.values[HAS_TEXT] == 0.0 and m.values["news_count_1d"] == 0.0  # no text row
    assert a.values["ret_1d"] == plain.values["ret_1d"]
    calls = reader.calls
    lookup.get_many(["AAPL"], (TEXT_SERVICE,))
    assert lookup.get("AAPL") is plain and reader.calls == calls  # cached per service set
    assert reader.asked == [(TEXT_SERVICE,), (TEXT_SERVICE,)]  # built once it succeeded
    bare = FeatureLookup(FakeReader(rows)).get_many(["AAPL"], (TEXT_SERVICE,))["AAPL"]
    assert isinstance(bare, InvalidRequestError)


def _text_bundle(root, with_text: bool):
    """A tiny LightGBM bundle whose target depends on a text feature (or not)."""
    import lightgbm as lgb

    from training.export import export_bundle

    names = [*FEATURES, *TEXT_MODEL_FEATURES] if with_text else list(FEATURES)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((500, len(names)))
    y = 0.01 * x[:, 0] + (0.02 * x[:, names.index("news_sent_mean_1d")] if with_text else 0)
    booster = lgb.train({"objective": "regression", "num_leaves": 7, "verbose": -1,
                         "min_data_in_leaf": 10, "num_threads": 1},
                        lgb.Dataset(x, y, feature_name=names), num_boost_round=20)
    fs = {"kept": names, "dropped": {}, **(feature_set_entry([TEXT_SERVICE]) if with_text
                                           else {})}
    return str(export_bundle(booster, names, root, model_name="stockray-lgbm-h5",
                             model_version="1", horizon=5, extra={"feature_set": fs}))


@pytest.mark.parametrize("with_text", [True, False])
def test_service_asks_for_the_text_service_only_for_text_models(tmp_path, with_text):
    rows = synthetic_rows()
    text = {"AAPL": _text_row(FEATURE_TS, news_count_1d=2.0, news_sent_mean_1d=0.3)}
    reader = ServiceReader(rows, text)
    bundle = _text_bundle(tmp_path / "b", with_text)
    served = ServedModels({"champion": ModelSource(bundle_dirs={5: bundle})})
    svc = PredictionService(LocalStages(FeatureLookup(reader), served))
    resp = asyncio.run(svc.predict(pb.PredictRequest(ticker="AAPL", explain=True, top_k=50)))
    p = resp.predictions[0]
    feats = {c.feature: c for c in p.contributions}
    assert reader.asked == ([(TEXT_SERVICE,)] if with_text else [])
    assert (set(TEXT_MODEL_FEATURES) <= set(feats)) is with_text
    if with_text:
        assert feats["news_sent_mean_1d"].value == pytest.approx(0.3)
        assert feats["news_sent_mean_1d"].shap != 0.0  # the planted text signal is explained
        info = resolve_bundles(ModelSource(bundle_dirs={5: bundle}))[5]
        assert bundle_services(info.meta) == (TEXT_SERVICE,)
