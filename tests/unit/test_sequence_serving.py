"""Sequence models from export to a served, explained prediction — without Ray.

Export parity (ONNX vs torch eager, dynamic batch), the bundle round trip, the offline history
reader's as-of correctness and cache invalidation, integrated-gradients completeness through
the serving Explainer, the PredictionService on a sequence family (errors included), and the
MLflow registration of one version per horizon.
"""

from __future__ import annotations

import asyncio
import os

import grpc
import mlflow
import numpy as np
import pytest

from serving.calibration import Calibration
from serving.errors import FeaturesUnavailableError, status_of
from serving.explainer import Explainer
from serving.history import OfflineHistory
from serving.lookup import FeatureLookup
from serving.models import ModelSource, load_bundle, resolve_bundles
from serving.modelset import ServedModels
from serving.protos import stockray_pb2 as pb
from serving.scorer import Scorer
from serving.service import LocalStages, PredictionService
from tests.serving_fixtures import (
    FEATURE_TS,
    FEATURES,
    FakeReader,
    latest_rows,
    make_sequence_bundles,
    sequence_frame,
    train_sequence,
    write_offline_features,
)
from training.export import (
    export_sequence_bundle,
    onnx_session,
    read_bundle_meta,
    retarget_sequence_bundle,
)
from training.sequence import build_windows, load_state, net_from_state, predict_array

# ONNX Runtime vs torch eager on the same float32 windows (NaN warm-up cells included): the
# measured gap is ~1e-8 for these tiny nets (max abs, return units); 1e-6 leaves room for
# other CPUs' kernels while still catching any real export error (those are >= 1e-3).
PARITY_TOL = 1e-6
# Integrated gradients, 50 trapezoid steps: |base + sum(contributions) - prediction| measured
# ~1e-7 here against predictions of ~1e-2 (the quadrature gap plus ONNX-vs-torch parity).
COMPLETENESS_TOL = 1e-5


@pytest.fixture(scope="module")
def frame():
    return sequence_frame()


@pytest.fixture(scope="module")
def result(frame):
    return train_sequence(frame)


@pytest.fixture(scope="module")
def dirs(result, tmp_path_factory):
    return make_sequence_bundles(tmp_path_factory.mktemp("seqb"), result)


@pytest.fixture(scope="module")
def offline(frame, tmp_path_factory):
    return write_offline_features(frame, tmp_path_factory.mktemp("off") / "features.parquet")


def run(coro):
    return asyncio.run(coro)


# --- export -------------------------------------------------------------------------------------


def test_export_parity_dynamic_batch_and_meta(result, dirs):
    meta = read_bundle_meta(dirs[5])
    print(f"sequence bundle ONNX parity: max abs {meta['onnx_parity_max_abs']:.2e} on "
          f"{meta['onnx_parity_rows']} windows (real validation + NaN / clip cases)")
    assert meta["onnx_parity_max_abs"] < PARITY_TOL
    assert meta["kind"] == "sequence" and meta["family"] == meta["architecture"] == "lstm"
    assert meta["window"] == 6 and meta["feature_names"] == list(FEATURES)
    assert meta["horizons"] == [1, 5] and meta["horizon"] == 5 and meta["output_index"] == 1
    assert set(meta["calibration"]) == {"1", "5"}
    assert meta["calibration"]["5"]["val_resid_std"] > 0
    # dynamic batch: 1, 3 and 40 rows through one session, each equal to torch eager
    sess = onnx_session(os.path.join(dirs[5], "model.onnx"))
    x = result.parity_windows.copy()
    x[::3, :2] = np.nan  # a young ticker's padding: the graph reads it as the train mean
    x[1::3, -1, 0] = 1e3  # far beyond the input clip
    for n in (1, 3, 40):
        got = sess.run(None, {"window": x[:n]})[0]
        want = predict_array(result.net, x[:n])
        assert got.shape == (n, 2)
        assert np.abs(got - want).max() < PARITY_TOL


def test_export_rejects_a_horizon_the_net_lacks(result, tmp_path):
    with pytest.raises(ValueError, match="not a head"):
        export_sequence_bundle(result.net, FEATURES, tmp_path / "b", model_name="x",
                               model_version="1", horizon=20)
    with pytest.raises(ValueError, match="feature names"):
        export_sequence_bundle(result.net, FEATURES[:3], tmp_path / "b", model_name="x",
                               model_version="1", horizon=5)


def test_bundle_round_trip(result, dirs, tmp_path):
    b = load_bundle(dirs[1])
    assert (b.kind, b.family, b.window, b.output_index, b.horizon) == ("sequence", "lstm", 6, 0, 1)
    assert b.model_name == "stockray-lstm-h1" and b.feature_names == FEATURES
    # state.pt rebuilds the same net (what the explainer uses)
    net = net_from_state(load_state(b.state_path))
    x = result.parity_windows[:8]
    np.testing.assert_array_equal(predict_array(net, x), predict_array(result.net, x))
    # the scorer reads each bundle's own output column
    scorer = Scorer(resolve_bundles(ModelSource(bundle_dirs=dirs)))
    want = predict_array(result.net, x)
    for j, h in enumerate((1, 5)):
        np.testing.assert_allclose(scorer.predict_matrix(x, h), want[:, j], atol=PARITY_TOL)
        assert scorer.models[h].kind == "sequence" and scorer.models[h].window == 6
    # per-horizon calibration: each bundle uses its own head's residuals
    c1, c5 = (Calibration.from_meta(load_bundle(dirs[h]).meta) for h in (1, 5))
    assert c1 is not None and c5 is not None and c5.resid_std > c1.resid_std
    # retargeting is a copy with another column; the source is left alone
    r = retarget_sequence_bundle(dirs[1], tmp_path / "h5", horizon=5, model_name="n",
                                 model_version="9")
    assert read_bundle_meta(r)["output_index"] == 1 and read_bundle_meta(dirs[1])["horizon"] == 1


# --- offline history ------------------------------------------------------------------------------


def test_history_window_never_reads_after_as_of(frame, offline):
    hist = OfflineHistory(offline, check_every_s=0)
    aapl = frame[frame["ticker"] == "AAPL"].sort_values("ts").reset_index(drop=True)
    ts_s = aapl["feature_ts"].to_numpy()
    names = list(FEATURES)
    for k in (0, 1, 4, 5, 37, len(aapl) - 1):
        # as_of exactly at row k, and just before row k + 1 (mid-day): both must end at row k
        for as_of in (ts_s[k], ts_s[k] + 3600.0):
            win, last = hist.window("AAPL", as_of, names, 6)
            assert last == ts_s[k] <= as_of
            lo = max(0, k - 5)
            want = aapl.loc[lo:k, names].to_numpy(np.float32)
            np.testing.assert_array_equal(win[6 - len(want):], want)
            assert np.isnan(win[: 6 - len(want)]).all()  # left padding for a short history
    # the window equals the training windows (same padding, same order)
    w = build_windows(aapl, names, 6)
    win, _ = hist.window("AAPL", ts_s[3], names, 6)
    np.testing.assert_array_equal(win, w.x[3])
    with pytest.raises(FeaturesUnavailableError, match="no offline feature history"):
        hist.window("AAPL", ts_s[0] - 1.0, names, 6)
    with pytest.raises(FeaturesUnavailableError, match="no offline feature history"):
        hist.window("ZZZZ", ts_s[-1], names, 6)
    with pytest.raises(FeaturesUnavailableError, match="lacks"):
        hist.window("AAPL", ts_s[-1], ["nope"], 6)


def test_history_is_cached_per_ticker_and_dropped_when_the_file_changes(frame, tmp_path):
    path = write_offline_features(frame[frame["ts"] < frame["ts"].max()], tmp_path / "f.parquet")
    hist = OfflineHistory(path, check_every_s=0)
    names = list(FEATURES)
    _, last = hist.window("MSFT", FEATURE_TS, names, 6)
    hist.window("MSFT", FEATURE_TS, names, 6)
    hist.window("NVDA", FEATURE_TS, names, 6)
    assert hist.reads == 2 and last < FEATURE_TS  # the newest day is not written yet
    write_offline_features(frame, tmp_path / "g.parquet")
    os.replace(tmp_path / "g.parquet", path)  # what the pipeline's atomic write does
    win, last = hist.window("MSFT", FEATURE_TS, names, 6)
    assert hist.invalidations == 1 and hist.reads == 3 and last == FEATURE_TS
    want = frame[(frame["ticker"] == "MSFT")].sort_values("ts")[names].to_numpy(np.float32)[-1]
    np.testing.assert_array_equal(win[-1], want)


# --- explainer: integrated gradients ---------------------------------------------------------------


def test_integrated_gradients_are_complete_through_the_explainer(result, dirs, offline):
    bundles = resolve_bundles(ModelSource(bundle_dirs=dirs))
    explainer, scorer = Explainer(bundles, cache_size=16), Scorer(bundles)
    hist = OfflineHistory(offline)
    rows = latest_rows(sequence_frame())
    worst = 0.0
    for ticker in ("AAPL", "MSFT", "SPY"):
        win, _ = hist.window(ticker, FEATURE_TS, FEATURES, 6)
        x = win[None]
        ex = explainer.explain(rows[ticker], [1, 5], top_k=0, ticker=ticker,
                               inputs={1: x, 5: x})
        for j, h in enumerate((1, 5)):
            e = ex[h]
            pred = scorer.predict_matrix(x, h)[0]
            gap = abs(e.base_value + sum(c.shap for c in e.contributions) - pred)
            worst = max(worst, gap)
            assert len(e.contributions) == len(FEATURES)
            # base value = the net at the training-mean window (the IG baseline)
            base_x = np.broadcast_to(result.net.x_mean.numpy(), x.shape).copy()
            base_pred = float(predict_array(result.net, base_x)[0, j])
            assert e.base_value == pytest.approx(base_pred, abs=1e-6)
            # a contribution's value is the window's last row (the features at ts)
            c = {c.feature: c.value for c in e.contributions}
            assert c["rsi_14"] == pytest.approx(float(x[0, -1, FEATURES.index("rsi_14")]))
    print(f"IG completeness through the explainer: max |base + sum - prediction| {worst:.2e}")
    assert worst < COMPLETENESS_TOL
    # cached by the exact window
    x = hist.window("AAPL", FEATURE_TS, FEATURES, 6)[0][None]
    explainer.explain(rows["AAPL"], [1], inputs={1: x})
    assert explainer.hits >= 1


# --- the service on a sequence family ------------------------------------------------------------------


@pytest.fixture(scope="module")
def service(dirs, offline, frame):
    rows = latest_rows(frame)
    rows["GAPPY"] = {"ret_1d": 0.1}
    rows["LAGGY"] = dict(rows["AAPL"])  # online, but the offline store has no history for it
    served = ServedModels({"champion": ModelSource(bundle_dirs=dirs)},
                          history=OfflineHistory(offline))
    lookup = FeatureLookup(FakeReader(rows))
    return PredictionService(LocalStages(lookup, served), clock=lambda: FEATURE_TS + 3600.0)


def test_service_predicts_and_explains_a_sequence_family(service, result, offline):
    resp = run(service.predict(pb.PredictRequest(ticker="nvda", explain=True, top_k=3)))
    win, _ = OfflineHistory(offline).window("NVDA", FEATURE_TS, FEATURES, 6)
    want = predict_array(result.net, win[None])[0]
    assert [p.horizon for p in resp.predictions] == [1, 5]
    for j, p in enumerate(resp.predictions):
        assert p.predicted_return == pytest.approx(float(want[j]), abs=PARITY_TOL)
        assert p.model_name == f"stockray-lstm-h{p.horizon}" and p.model_version == "2"
        assert p.feature_timestamp == "2024-05-01T00:00:00Z" and not p.stale
        assert len(p.contributions) == 3 and p.HasField("prob_up") and p.HasField("interval")
    e = run(service.explain(pb.ExplainRequest(ticker="NVDA", horizons=[5]))).explanations[0]
    assert len(e.contributions) == len(FEATURES)
    total = e.base_value + sum(c.shap for c in e.contributions)
    assert total == pytest.approx(e.predicted_return, abs=COMPLETENESS_TOL)
    m = run(service.list_models())
    assert [(x.kind, x.family, x.window) for x in m.models] == [("sequence", "lstm", 6)] * 2


def test_horizons_of_one_net_share_a_session_one_window_and_one_run(dirs, offline, frame):
    """The h1 and h5 bundles are the same ONNX graph: one session, and a multi-ticker,
    two-horizon score cuts each window once and runs ONNX once, with the same numbers as a
    run per horizon."""
    from serving.scorer import input_groups
    from serving.service import score_rows

    class Counting:
        def __init__(self, inner):
            self.inner, self.windows = inner, 0

        def window(self, *a, **kw):
            self.windows += 1
            return self.inner.window(*a, **kw)

    history = Counting(OfflineHistory(offline))
    served = ServedModels({"champion": ModelSource(bundle_dirs=dirs)}, history=history)
    ms = served.sets["champion"]
    assert ms.scorer.sessions == 1 and ms.info[1].graph == ms.info[5].graph != ""
    assert input_groups(ms.info, [5, 1]) == [(5, 1)]
    session = ms.scorer._sessions[1]
    runs = []
    real_run = session.run
    session.run = lambda *a, **kw: runs.append(1) or real_run(*a, **kw)
    try:
        rows = latest_rows(frame)
        feature_rows = [FeatureLookup(FakeReader(rows)).get_many([t])[t]
                        for t in ("AAPL", "MSFT", "NVDA")]
        got = score_rows(served, feature_rows, [1, 5], "champion")
        assert len(runs) == 1 and history.windows == 3
        for r, g in zip(feature_rows, got, strict=True):
            x = history.inner.window(r.ticker, r.feature_ts, FEATURES, 6)[0][None]
            for h in (1, 5):
                assert g[h][0] == ms.scorer.predict_matrix(x, h)[0]
                assert g[h][1].horizon == h
    finally:
        session.run = real_run


@pytest.mark.parametrize(
    ("ticker", "kw", "code", "needle"),
    [
        ("ZZZZ", {}, grpc.StatusCode.NOT_FOUND, "no features for ticker"),
        ("GAPPY", {}, grpc.StatusCode.FAILED_PRECONDITION, "run materialize"),
        ("LAGGY", {}, grpc.StatusCode.FAILED_PRECONDITION, "no offline feature history"),
        ("AAPL", {"horizons": [20]}, grpc.StatusCode.INVALID_ARGUMENT, "served horizons"),
        ("AAPL", {"as_of": "2024-04-01"}, grpc.StatusCode.INVALID_ARGUMENT, "offline"),
    ],
)
def test_sequence_family_errors_match_lightgbm(service, ticker, kw, code, needle):
    with pytest.raises(Exception) as ei:
        run(service.predict(pb.PredictRequest(ticker=ticker, explain=True, **kw)))
    got, message, _ = status_of(ei.value)
    assert got == code and needle in message


def test_offline_store_lagging_the_online_row_is_failed_precondition(dirs, frame, tmp_path):
    old = write_offline_features(frame[frame["ts"] < frame["ts"].max()], tmp_path / "f.parquet")
    served = ServedModels({"champion": ModelSource(bundle_dirs=dirs)},
                          history=OfflineHistory(old))
    svc = PredictionService(LocalStages(FeatureLookup(FakeReader(latest_rows(frame))), served))
    with pytest.raises(FeaturesUnavailableError, match="lags the online store"):
        run(svc.predict(pb.PredictRequest(ticker="AAPL")))


def test_sequence_models_need_a_history_source(dirs):
    with pytest.raises(ValueError, match="offline_features"):
        ServedModels({"champion": ModelSource(bundle_dirs=dirs)})


# --- registry --------------------------------------------------------------------------------------


def test_register_sequence_one_version_per_horizon(result, settings):
    from training.registry import CARD_FILE, ensure_experiment, register_sequence

    settings.mlflow_dir.mkdir(parents=True, exist_ok=True)
    uri = settings.tracking_uri
    exp = ensure_experiment(uri, settings.artifact_uri, "seq-test")
    got = register_sequence(result, [5], tracking_uri=uri, experiment_id=exp,
                            bundle_root=settings.models_dir, params={"why": "test"})
    v = got[5]
    assert (v.name, v.version, v.alias) == ("stockray-lstm-h5", "1", "champion")
    assert v.bundle_dir == settings.models_dir / "lstm" / "h5"
    local = read_bundle_meta(v.bundle_dir)
    assert local["model_version"] == "1" and local["output_index"] == 1
    client = mlflow.MlflowClient(tracking_uri=uri)
    assert str(client.get_model_version_by_alias("stockray-lstm-h5", "champion").version) == "1"
    run_ = client.get_run(v.run_id)
    assert run_.data.tags["family"] == "lstm" and run_.data.params["window"] == "6"
    assert run_.data.metrics["onnx_parity_max_abs"] < PARITY_TOL
    assert "baseline_zero_rmse" not in run_.data.metrics or np.isfinite(
        run_.data.metrics["baseline_zero_rmse"])
    card = mlflow.artifacts.load_text(f"runs:/{v.run_id}/{CARD_FILE}")
    assert "LSTM over the last 6" in card and "integrated gradients" in card
    # the registry's bundle is what serving downloads for the family
    src = ModelSource(tracking_uri=uri, horizons=[5], registered_name="stockray-lstm-h{h}",
                      download_dir=str(settings.data_dir / "dl"))
    b = resolve_bundles(src)[5]
    assert b.kind == "sequence" and b.model_version == "1" and b.output_index == 1


def test_registry_names_per_family():
    from training.registry import registered_name

    assert registered_name("lstm", 5) == "stockray-lstm-h5"
    assert registered_name("transformer", 20) == "stockray-transformer-h20"
    with pytest.raises(ValueError, match="unknown model family"):
        registered_name("gru", 5)


def test_transformer_bundle_exports_and_explains(frame, offline, tmp_path):
    res = train_sequence(frame, model="transformer", epochs=1)
    d = make_sequence_bundles(tmp_path, res)
    meta = read_bundle_meta(d[1])
    print(f"transformer bundle ONNX parity: max abs {meta['onnx_parity_max_abs']:.2e}")
    assert meta["family"] == "transformer" and meta["onnx_parity_max_abs"] < PARITY_TOL
    bundles = resolve_bundles(ModelSource(bundle_dirs=d))
    x = OfflineHistory(offline).window("SPY", FEATURE_TS, FEATURES, 6)[0][None]
    e = Explainer(bundles).explain({}, [1], top_k=0, inputs={1: x})[1]
    pred = Scorer(bundles).predict_matrix(x, 1)[0]
    gap = abs(e.base_value + sum(c.shap for c in e.contributions) - pred)
    rel = gap / abs(pred - e.base_value)
    print(f"IG completeness transformer: {gap:.2e} abs, {rel:.2e} of f(x) - f(baseline)")
    # Attention, LayerNorm and the FFN's ReLU kinks bend the path more than an LSTM: at 50
    # steps measured 9e-5 abs here (4e-2 of a tiny f(x) - f(baseline) of 2e-3); over 30
    # windows median rel 5e-3, max abs 2.6e-4 (200 steps: 4e-5). The quadrature sets this,
    # not the export (parity ~1e-8).
    assert gap < 1e-3
