"""Sequence models without Ray: they find the planted signal of a synthetic market through
the real feature pipeline, export to ONNX with eager parity, and integrated gradients are
complete (attributions sum to f(x) - f(baseline))."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from features.pipeline import FEATURE_NAMES, build_features_local
from features.sources import MARKET_TICKER
from training.attribution import integrated_gradients
from training.export import export_torch_onnx, onnx_providers
from training.model import Dataset
from training.sequence import (
    SequenceConfig,
    SequenceModel,
    SequenceNet,
    build_windows,
    ic_by_horizon,
    segment_masks,
)
from training.synthetic import empirical_oracle_ic, make_market


def _market_bars(bars: pd.DataFrame) -> pd.DataFrame:
    logret = np.log(bars.pivot(index="ts", columns="ticker", values="close")).diff()
    level = 100 * np.exp(logret.mean(axis=1).fillna(0).cumsum())
    return pd.DataFrame(
        {
            "ticker": MARKET_TICKER,
            "ts": level.index,
            "open": level.values,
            "high": level.values,
            "low": level.values,
            "close": level.values,
            "volume": 1.0,
        }
    )


@pytest.fixture(scope="module")
def planted():
    """Features of a 30-ticker, 500-day synthetic market with a 1-day reversal planted."""
    market = make_market(n_tickers=30, n_days=500, seed=11)
    stocks = market.bars.drop(columns=["adj_close"])
    bars = pd.concat([stocks, _market_bars(market.bars)], ignore_index=True)
    bars = bars.assign(adj_factor=1.0, source="synthetic", ingested_at=bars["ts"].max())
    frame = build_features_local(bars)
    d = sorted(frame["ts"].unique())
    seg = {"train": [d[30], d[329]], "valid": [d[350], d[-1]]}
    return market, frame, seg


@pytest.fixture(scope="module")
def fitted(planted):
    _, frame, seg = planted
    tr, va, _ = segment_masks(frame, seg)
    cfg = SequenceConfig(
        model="lstm", window=8, hidden=16, epochs=4, lr=3e-3, dropout=0.0, num_threads=1
    )
    return SequenceModel(cfg, FEATURE_NAMES).fit(Dataset.of(frame, FEATURE_NAMES, train=tr, valid=va))


def test_lstm_finds_the_planted_signal(planted, fitted):
    market, frame, seg = planted
    _, va, _ = segment_masks(frame, seg)
    pred = fitted.predict_frame(Dataset.of(frame, FEATURE_NAMES, valid=va), "valid")
    got = ic_by_horizon(pred, frame)
    oracle = empirical_oracle_ic(market, 1, start=seg["valid"][0])
    print(
        f"planted market: LSTM valid IC h=1 {got[1]:.3f} (oracle {oracle:.3f}), "
        f"h=5 {got[5]:.3f}, h=20 {got[20]:.3f}"
    )
    assert oracle > 0.15
    assert got[1] > 0.05  # well above noise (~0.01 per date-mean over 130 dates x 30 names)
    # the per-epoch validation IC logged during fit agrees with scoring afterwards
    assert fitted.history[-1]["val_ic_1d"] == pytest.approx(got[1], abs=1e-4)
    s = fitted.predict(Dataset.of(frame, FEATURE_NAMES, valid=va), "valid", horizon=5)
    assert list(s.index.names) == ["ts", "ticker"] and len(s) == va.sum()
    assert s.name == "pred_5d"


def test_transformer_fits_and_predicts(planted):
    _, frame, seg = planted
    frame = frame[frame["ticker"].isin(sorted(frame["ticker"].unique())[:12])]  # CPU budget
    tr, va, _ = segment_masks(frame, seg)
    cfg = SequenceConfig(
        model="transformer",
        window=8,
        hidden=16,
        heads=2,
        epochs=2,
        lr=3e-3,
        dropout=0.0,
        num_threads=1,
    )
    ds = Dataset.of(frame, FEATURE_NAMES, train=tr, valid=va)
    model = SequenceModel(cfg, FEATURE_NAMES).fit(ds)
    pred = model.predict_frame(ds, "valid")
    assert pred.shape == (va.sum(), 3) and np.isfinite(pred.to_numpy()).all()
    assert ic_by_horizon(pred, frame)[1] > 0.0


def test_onnx_export_matches_torch_eager(planted, fitted, tmp_path):
    _, frame, seg = planted
    _, va, _ = segment_masks(frame, seg)
    w = build_windows(frame, FEATURE_NAMES, fitted.cfg.window, mask=va)
    x = torch.as_tensor(w.x[:64])  # real windows, NaN warm-up cells included
    info = export_torch_onnx(fitted.net, x[:2], tmp_path / "lstm.onnx", parity_input=x)
    print(f"ONNX parity LSTM: max abs {info['parity_max_abs']:.2e} on {info['parity_rows']} rows")
    assert info["parity_max_abs"] < 1e-5
    assert info["data_path"] is None and not (tmp_path / "lstm.onnx.data").exists()
    assert info["providers"][0] == onnx_providers()[0]


def test_onnx_export_transformer_dynamic_batch(tmp_path):
    torch.manual_seed(0)
    net = SequenceNet(
        5, SequenceConfig(model="transformer", window=6, hidden=8, heads=2, layers=2)
    ).eval()
    x = torch.randn(1, 6, 5)  # batch 1 is repeated to 2 so the batch stays dynamic
    info = export_torch_onnx(net, x, tmp_path / "tf.onnx", parity_input=torch.randn(33, 6, 5))
    print(f"ONNX parity transformer: max abs {info['parity_max_abs']:.2e}")
    assert info["parity_max_abs"] < 1e-5 and info["parity_rows"] == 33


@pytest.mark.parametrize("kind", ["lstm", "transformer"])
def test_integrated_gradients_are_complete(kind):
    torch.manual_seed(1)
    cfg = SequenceConfig(model=kind, window=10, hidden=16, dropout=0.0)
    net = SequenceNet(6, cfg)
    with torch.no_grad():
        net.y_std.fill_(0.02)  # return units
    x = torch.randn(32, 10, 6)
    x[0, :4] = float("nan")  # warm-up cells: read as the mean, attributed zero
    res = integrated_gradients(net, x, output_index=1, steps=50)
    assert res.attributions.shape == (32, 10, 6)
    assert (res.attributions[0, :4] == 0).all()
    gap = res.output - res.baseline_output
    rel = np.abs(res.delta) / np.abs(gap)
    print(
        f"IG {kind}: completeness max abs {np.abs(res.delta).max():.2e}, "
        f"median rel {np.median(rel):.2e}, max rel {rel.max():.2e}"
    )
    with torch.no_grad():
        filled = torch.where(torch.isnan(x), net.x_mean.expand_as(x), x)
        np.testing.assert_allclose(res.output, net(filled)[:, 1].numpy(), atol=1e-6)
    assert np.median(rel) < 5e-3
    assert rel.max() < 5e-2
    assert res.by_feature().shape == (32, 6)
