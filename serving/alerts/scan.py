"""One alert pass: ask the running service, check realised outcomes and data quality, deliver.

`scan` calls the real gRPC service (PredictBatch) for the universe, turns each served horizon
into a `PredictionObservation`, and keeps what the next pass needs in
``<data_dir>/alerts/state.json``: the last forecast per (ticker, horizon) for direction flips
and the served intervals still waiting for their realised return (read from the lake once
``horizon`` sessions have passed) for interval breaches. The newest data-quality report gives
the quarantine share and each ticker's newest bar.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from features.durable import atomic_write_json
from serving.alerts.rules import (
    Alert,
    AlertConfig,
    PredictionObservation,
    prediction_alerts,
    quality_alerts,
)


@dataclass
class ScanResult:
    """What one pass saw and sent."""

    observations: int
    realised: int
    alerts: list[Alert]
    reports: dict


def _load_state(path: Path) -> dict:
    if path.exists():
        return json.loads(path.read_text())
    return {"previous": {}, "pending": []}


def _save_state(path: Path, state: dict) -> None:
    atomic_write_json(path, state, indent=1, sort_keys=True)


def observations_from_batch(resp) -> list[PredictionObservation]:
    """Served horizons of a ``PredictBatchResponse`` (tickers that errored are skipped)."""
    out = []
    for res in resp.results:
        if res.WhichOneof("result") != "prediction":
            continue
        for p in res.prediction.predictions:
            interval = ((p.interval.lower, p.interval.upper)
                        if p.HasField("interval") else None)
            out.append(PredictionObservation(
                ticker=res.ticker, horizon=int(p.horizon),
                predicted_return=float(p.predicted_return), as_of=p.feature_timestamp,
                interval=interval, model=p.model_name, version=p.model_version))
    return out


def realised_return(bars: pd.DataFrame, ticker: str, as_of: str, horizon: int) -> float | None:
    """Log return of the adjusted close from the session of ``as_of`` to ``horizon`` sessions
    later (the label's definition); None until that session is in the lake."""
    b = bars[bars["ticker"] == ticker].sort_values("ts")
    if b.empty:
        return None
    sessions = pd.to_datetime(b["ts"], utc=True).dt.normalize().to_numpy("datetime64[ns]")
    t = pd.Timestamp(as_of)
    day = (t.tz_convert("UTC") if t.tzinfo else t).tz_localize(None).normalize()
    i = int(np.searchsorted(sessions, day.to_datetime64()))
    if i >= len(sessions) or sessions[i] != day.to_datetime64() or i + horizon >= len(sessions):
        return None
    adj = (b["close"] * b["adj_factor"]).to_numpy(float)
    return float(np.log(adj[i + horizon] / adj[i]))


def quality_inputs(report_path: Path) -> dict | None:
    """Rows, quarantined rows and newest bar time from a data-quality report."""
    if not report_path.exists():
        return None
    rep = json.loads(report_path.read_text())
    c = rep.get("contract", {})
    return {"run_id": rep.get("run_id", "unknown"), "rows": int(c.get("rows_in", 0)),
            "quarantined": int(c.get("rows_quarantined", 0)),
            "newest_bar": {"lake": rep.get("features", {}).get("last_ts")}
            if rep.get("features", {}).get("last_ts") else {}}


def scan(client, config: AlertConfig, dispatcher, *, tickers: Sequence[str],
         horizons: Sequence[int] = (), bars: pd.DataFrame | None = None,
         state_path: Path, quality_report: Path | None = None,
         now: datetime | None = None) -> ScanResult:
    """Run one alert pass and deliver what fired.

    Args:
        client: a `serving.client.PredictionClient` of the running service.
        config: the alert rules and sinks.
        dispatcher: a `serving.alerts.sinks.Dispatcher` for ``config``.
        tickers, horizons: what to ask the service for (horizons empty: all served).
        bars: the lake's bars (for realised returns); None skips interval breaches.
        state_path: where flips and pending intervals are remembered between passes.
        quality_report: the newest ``data_quality/latest.json``; None skips quality rules.
        now: current time for staleness (UTC).
    """
    state = _load_state(state_path)
    served = observations_from_batch(client.predict_batch(list(tickers), list(horizons)))
    realised_obs, still_pending = [], []
    for item in state["pending"]:
        obs = PredictionObservation(**{**item, "interval": tuple(item["interval"])})
        y = None if bars is None else realised_return(bars, obs.ticker, obs.as_of, obs.horizon)
        if y is None:
            still_pending.append(item)
        else:
            realised_obs.append(PredictionObservation(**{**asdict(obs), "realised_return": y}))
    alerts, previous = prediction_alerts(config.rules, served, state["previous"])
    breach_rules = [r for r in config.rules if r.when == "interval_breach"]
    alerts += prediction_alerts(breach_rules, realised_obs)[0]
    known = {(p["ticker"], p["horizon"], p["as_of"]) for p in still_pending}
    for obs in served:
        if obs.interval is not None and (obs.ticker, obs.horizon, obs.as_of) not in known:
            still_pending.append({**asdict(obs), "interval": list(obs.interval)})
    q = quality_inputs(quality_report) if quality_report is not None else None
    if q is not None:
        alerts += quality_alerts(config.rules, run_id=q["run_id"], rows=q["rows"],
                                 quarantined=q["quarantined"], newest_bar=q["newest_bar"],
                                 now=now or datetime.now(UTC))
    reports = {k: asdict(v) for k, v in dispatcher.deliver(alerts).items()}
    _save_state(state_path, {"previous": previous, "pending": still_pending})
    return ScanResult(observations=len(served), realised=len(realised_obs), alerts=alerts,
                      reports=reports)
