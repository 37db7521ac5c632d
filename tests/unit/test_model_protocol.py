"""Every candidate is a `training.model.Model`: the same fit / predict / export shape."""

from __future__ import annotations

import inspect
import json

import numpy as np
import pandas as pd
import pytest

from training.bundle import KIND_SEQUENCE, read_bundle_meta
from training.ensemble import RegimeEnsemble, stack_members
from training.lgbm import LgbmModel, LgbmParams
from training.model import Dataset, Model
from training.nets import SequenceConfig
from training.sequence import SequenceModel

NAMES = ["a", "b"]


def _panel(n_dates: int = 60, n_names: int = 8, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ts = np.repeat(pd.bdate_range("2021-01-01", periods=n_dates), n_names)
    f = pd.DataFrame({"ts": ts, "ticker": np.tile([f"T{i}" for i in range(n_names)], n_dates),
                      "a": rng.normal(size=len(ts)), "b": rng.normal(size=len(ts)),
                      "mkt_trend_200": 0.01, "mkt_vol_20": rng.uniform(0.01, 0.02, len(ts))})
    f["fwd_ret_1d"] = 0.01 * f["a"] + rng.normal(0, 0.01, len(ts))
    return f


def _dataset(f: pd.DataFrame) -> Dataset:
    d = f["ts"].rank(method="dense").to_numpy()
    return Dataset.of(f, NAMES, "fwd_ret_1d", train=d <= 40, valid=(d > 40) & (d <= 50),
                      test=d > 50)


def _candidates():
    return [LgbmModel(NAMES, 1, LgbmParams(num_boost_round=5)),
            LgbmModel(NAMES, 1, LgbmParams(objective="lambdarank", num_boost_round=5)),
            SequenceModel(SequenceConfig(window=3, hidden=4, epochs=1, horizons=(1,)), NAMES),
            RegimeEnsemble(["lgbm_reg", "lgbm_rank"])]


@pytest.mark.parametrize("model", _candidates(), ids=lambda m: type(m).__name__)
def test_every_candidate_has_the_one_shape(model):
    assert isinstance(model, Model)
    assert list(inspect.signature(model.fit).parameters) == ["dataset"]
    assert list(inspect.signature(model.predict).parameters)[:2] == ["dataset", "segment"]
    assert "out_dir" in inspect.signature(model.export).parameters


def test_fit_predict_export_through_the_protocol(tmp_path):
    ds = _dataset(_panel())
    n_test = int(ds.mask("test").sum())
    members = {}
    for m in _candidates()[:3]:
        fitted: Model = m.fit(ds)
        p = fitted.predict(ds, "test")
        assert list(p.index.names) == ["ts", "ticker"] and len(p) == n_test
        assert np.isfinite(p.to_numpy()).all()
        if isinstance(m, LgbmModel):  # the sequence export (torch -> ONNX) is the slow test
            assert read_bundle_meta(fitted.export(tmp_path / fitted.name))["horizon"] == 1
            members[fitted.name] = fitted
    # the ensemble stacks the members' validation predictions, then blends their test ones
    valid, test = ds.rows("valid"), ds.rows("test")
    ens = RegimeEnsemble(list(members)).fit(stack_members(
        valid, {k: m.predict(ds, "valid") for k, m in members.items()}, "fwd_ret_1d",
        train=None))
    blend = ens.predict(stack_members(test, {k: m.predict(ds, "test") for k, m in
                                             members.items()}, test=None))
    assert blend.index.equals(pd.MultiIndex.from_frame(test[["ts", "ticker"]]))
    saved = json.loads((ens.export(tmp_path / "ens") / "ensemble.json").read_text())
    assert saved["members"] == list(members) and set(saved["weights"]) == set(ens.weights_)


def test_fit_needs_a_train_segment():
    f = _panel(n_dates=10)
    with pytest.raises(KeyError, match="train"):
        LgbmModel(NAMES, 1).fit(Dataset.of(f, NAMES, test=None))
    with pytest.raises(ValueError, match="predictions"):
        stack_members(f, {"x": np.zeros(3)})


@pytest.mark.slow
def test_sequence_model_exports_a_sequence_bundle(tmp_path):
    ds = _dataset(_panel())
    m = SequenceModel(SequenceConfig(window=3, hidden=4, epochs=1, horizons=(1,)), NAMES).fit(ds)
    meta = read_bundle_meta(m.export(tmp_path / m.name))
    assert meta["kind"] == KIND_SEQUENCE and meta["horizon"] == 1
    assert meta["feature_names"] == NAMES and meta["model_name"] == "stockray-lstm-h1"
