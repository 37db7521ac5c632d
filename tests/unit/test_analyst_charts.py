"""Analyst app figures: the SHAP waterfall ends at the prediction; indicator panes and traces."""

import numpy as np
import pandas as pd
import pytest

from serving.analyst import charts
from serving.analyst.app import forecast_table
from serving.protos import stockray_pb2 as pb


def _prediction(n=14):
    rng = np.random.default_rng(1)
    shap = rng.normal(0, 0.002, n)
    contribs = [pb.Contribution(feature=f"f{i}", value=float(i), shap=float(v))
                for i, v in enumerate(shap)]
    return pb.HorizonPrediction(horizon=5, predicted_return=0.001 + float(shap.sum()),
                                base_value=0.001, contributions=contribs, model_name="m",
                                model_version="2")


def test_waterfall_steps_from_base_to_prediction():
    p = _prediction()
    fig = charts.shap_waterfall(p, top=10)
    w = fig.data[0]
    assert list(w.measure) == ["absolute"] + ["relative"] * 11 + ["total"]
    assert w.y[0] == "base value" and w.y[-1] == "prediction" and w.y[-2] == "4 other features"
    # the base plus every step lands exactly on the served prediction
    assert w.x[0] + sum(w.x[1:-1]) == pytest.approx(p.predicted_return, abs=1e-12)
    assert w.x[-1] == pytest.approx(p.predicted_return)
    shown = [abs(v) for v in w.x[1:11]]
    assert shown == sorted(shown, reverse=True)  # largest contributions first


def test_price_figure_panes_and_indicators():
    days = pd.bdate_range("2023-01-02", periods=300, tz="UTC")
    close = 100 * np.exp(np.cumsum(np.random.default_rng(0).normal(0, 0.01, 300)))
    bars = pd.DataFrame({"ts": days, "open": close, "high": close * 1.01, "low": close * 0.99,
                         "close": close, "volume": 1e6, "adj_factor": 1.0})
    fig = charts.price_figure(bars, ["SMA 20", "Bollinger 20", "RSI 14", "MACD"], last_days=250)
    names = [t.name for t in fig.data]
    assert names[:4] == ["price", "SMA 20", "BB upper", "BB lower"]
    assert {"RSI 14", "MACD", "signal", "MACD hist"} <= set(names)
    assert len(fig.data[0].x) == 250
    sma = np.asarray(fig.data[1].y, float)
    assert np.isfinite(sma).all()  # computed on the full history, cut after warm-up
    rsi = np.asarray(next(t for t in fig.data if t.name == "RSI 14").y, float)
    assert np.nanmin(rsi) >= 0 and np.nanmax(rsi) <= 100 and np.ptp(rsi) > 10
    with pytest.raises(ValueError, match="unknown indicators"):
        charts.price_figure(bars, ["Ichimoku"])


def test_forecast_table_shows_interval_and_prob_up_only_when_served():
    resp = pb.PredictResponse(ticker="AAPL", predictions=[
        pb.HorizonPrediction(horizon=1, predicted_return=0.002, prob_up=0.61,
                             interval=pb.Interval(lower=-0.01, upper=0.014, coverage=0.8),
                             model_name="stockray-lgbm-h1", model_version="3"),
        pb.HorizonPrediction(horizon=5, predicted_return=-0.004, model_name="x",
                             model_version="1", stale=True)])
    t = forecast_table(resp)
    assert t.loc[0, "interval"] == "[-0.0100, +0.0140] (80%)" and t.loc[0, "P(up)"] == "61.0%"
    assert t.loc[1, "interval"] == "" and t.loc[1, "P(up)"] == "" and t.loc[1, "stale"] == "yes"


def test_model_card_read_from_the_registry(tmp_path):
    import mlflow

    from features.settings import Settings
    from serving.analyst.data import AnalystData

    settings = Settings(data_dir=tmp_path).resolved()
    data = AnalystData(settings)
    assert data.model_card("stockray-lgbm-h5", "1") is None  # no registry yet
    settings.mlflow_dir.mkdir(parents=True)
    client = mlflow.MlflowClient(tracking_uri=settings.tracking_uri)
    client.create_registered_model("stockray-lgbm-h5")
    client.create_model_version("stockray-lgbm-h5", source=str(tmp_path),
                                description="# Model card\nintended use: research")
    assert data.model_card("stockray-lgbm-h5", "1").startswith("# Model card")
    assert data.model_card("stockray-lgbm-h5", "7") is None
