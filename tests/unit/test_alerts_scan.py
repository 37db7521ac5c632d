"""An alert pass over served forecasts: a big move now, a flip and an interval breach on the
next pass once the realised return is in the lake, a stale source from the quality report."""

import json

import numpy as np
import pandas as pd

from serving.alerts.rules import AlertConfig
from serving.alerts.scan import realised_return, scan
from serving.alerts.sinks import Dispatcher
from serving.protos import stockray_pb2 as pb

DAYS = pd.bdate_range("2026-11-02", periods=12, tz="UTC")


class ServedForecasts:
    """Answers PredictBatch like the service would (a scripted response per pass)."""

    def __init__(self, passes):
        self.passes = list(passes)

    def predict_batch(self, tickers, horizons):
        preds, as_of = self.passes.pop(0)
        results = []
        for t in tickers:
            if t not in preds:
                results.append(pb.TickerResult(ticker=t, error=pb.TickerError(
                    code="NOT_FOUND", message="unknown ticker")))
                continue
            p = pb.HorizonPrediction(horizon=5, predicted_return=preds[t], model_name="m",
                                     model_version="3", feature_timestamp=as_of,
                                     interval=pb.Interval(lower=preds[t] - 0.02,
                                                          upper=preds[t] + 0.02, coverage=0.8))
            results.append(pb.TickerResult(ticker=t, prediction=pb.PredictResponse(
                ticker=t, predictions=[p])))
        return pb.PredictBatchResponse(results=results)


def _bars(closes):
    return pd.DataFrame({"ticker": "AAPL", "ts": DAYS[:len(closes)], "close": closes,
                         "adj_factor": 1.0})


def test_realised_return_waits_for_the_horizon():
    closes = np.linspace(100, 111, 12)
    assert realised_return(_bars(closes[:5]), "AAPL", str(DAYS[0]), 5) is None
    y = realised_return(_bars(closes), "AAPL", str(DAYS[0]), 5)
    assert y == np.log(closes[5] / closes[0])


def test_two_passes_fire_move_then_flip_and_breach(tmp_path):
    cfg = AlertConfig.model_validate({
        "rules": [
            {"name": "move", "kind": "prediction", "when": "move", "threshold": 0.03},
            {"name": "flip", "kind": "prediction", "when": "direction_flip"},
            {"name": "breach", "kind": "prediction", "when": "interval_breach"},
            {"name": "stale", "kind": "data_quality", "when": "stale_source",
             "max_age_days": 4}],
        "sinks": [{"name": "log", "type": "file", "path": str(tmp_path / "alerts.jsonl")}]})
    d = Dispatcher(cfg, tmp_path)
    state = tmp_path / "state.json"
    client = ServedForecasts([({"AAPL": 0.04}, str(DAYS[0])), ({"AAPL": -0.01}, str(DAYS[6]))])
    r1 = scan(client, cfg, d, tickers=["AAPL", "ZZZZ"], bars=_bars([100.0] * 3),
              state_path=state)
    assert (r1.observations, r1.realised) == (1, 0)
    assert [a.rule for a in r1.alerts] == ["move"]
    assert len(json.loads(state.read_text())["pending"]) == 1
    # six sessions later the realised 5-day return (-5%) is far below the served [+2%, +6%]
    closes = [100.0] * 5 + [95.0] * 7
    report = tmp_path / "latest.json"
    report.write_text(json.dumps({"run_id": "r2", "contract": {"rows_in": 100,
                                  "rows_quarantined": 0},
                                  "features": {"last_ts": "2026-11-01T00:00:00+00:00"}}))
    r2 = scan(client, cfg, d, tickers=["AAPL"], bars=_bars(closes), state_path=state,
              quality_report=report, now=pd.Timestamp("2026-11-10", tz="UTC").to_pydatetime())
    assert sorted(a.rule for a in r2.alerts) == ["breach", "flip", "stale"]
    breach = next(a for a in r2.alerts if a.rule == "breach")
    assert breach.figures["realised_return"] == np.log(95 / 100)
    assert r2.reports["log"]["delivered"] == 3
    lines = (tmp_path / "alerts.jsonl").read_text().splitlines()
    assert [json.loads(x)["rule"] for x in lines] == ["move", "flip", "breach", "stale"]
    pending = json.loads(state.read_text())["pending"]
    assert [p["as_of"] for p in pending] == [str(DAYS[6])]  # the realised one left the queue
