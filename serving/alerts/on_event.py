"""Event alerts with a fresh prediction: the stream's event handler on the serving side.

``features.live.StreamRunner`` recomputes the affected tickers' features and pushes them
online *before* it calls the handler, so :class:`PredictOnEvent` asks the served model (through
the real gRPC client, like any other client) for a prediction on the refreshed row and hands
event + prediction to every ``features.events.AlertSink``. A failed prediction does not lose
the alert: it goes out with ``prediction_error`` instead.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from features.events import AlertSink
from serving.client import PredictionClient, PredictionError

log = logging.getLogger(__name__)


class PredictOnEvent:
    """``handler(events)``: one Predict per affected ticker, then each sink gets each alert.

    Args:
        target: ``host:port`` of the gRPC prediction endpoint.
        sinks: where alerts go.
        application: Serve application name metadata (several apps behind one proxy).
        timeout_s: per Predict call.
    """

    def __init__(self, target: str, sinks: Sequence[AlertSink], *,
                 application: str | None = None, timeout_s: float = 5.0):
        self.target = target
        self.sinks = list(sinks)
        self.timeout_s = timeout_s
        self._client = PredictionClient(target, application=application)

    def __call__(self, events: list[dict]) -> list[dict]:
        cache: dict[str, dict] = {}
        alerts = []
        for e in events:
            t = e["ticker"]
            if t not in cache:
                cache[t] = self._predict(t)
            alert = {**e, **cache[t]}
            alerts.append(alert)
            for s in self.sinks:
                s.send(alert)
        return alerts

    def _predict(self, ticker: str) -> dict:
        try:
            resp = self._client.predict(ticker, timeout=self.timeout_s)
        except PredictionError as err:  # e.g. NOT_FOUND for a ticker the model does not know
            log.warning("prediction for event on %s failed: %s", ticker, err.code.name)
            return {"prediction_error": f"{err.code.name}: {err.details}"}
        preds = {str(p.horizon): p.predicted_return for p in resp.predictions}
        ts = resp.predictions[0].feature_timestamp if resp.predictions else ""
        return {"prediction": preds, "feature_timestamp": ts,
                "model_version": resp.predictions[0].model_version if resp.predictions else ""}

    def close(self) -> None:
        self._client.close()
