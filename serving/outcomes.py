"""Served forecasts as a table, read back from the audit log (for live-performance checks).

One row per (request, ticker, horizon) answered by Predict or PredictBatch: the request time,
the features' time (request time minus the feature age the service logged), the forecast, its
interval when one was served, and the model (alias, name, version) that answered.
"""

from __future__ import annotations

import os

import pandas as pd

from serving.audit import read_audit

COLUMNS = ("request_ts", "feature_ts", "ticker", "horizon", "pred", "lo", "hi", "alias",
           "model", "version")


def served_predictions(audit_dir: str | os.PathLike[str]) -> pd.DataFrame:
    """Every forecast the audit log holds, oldest first (columns `COLUMNS`)."""
    records, _ = read_audit(audit_dir)
    rows = []
    for rec in records:
        if rec.get("rpc") not in ("Predict", "PredictBatch") or "error" in rec:
            continue
        for r in rec.get("rows") or ():
            for h, s in (r.get("h") or {}).items():
                if not isinstance(s, dict) or s.get("age") is None:
                    continue
                alias, name, version = (s["model"].split(":") + ["", "", ""])[:3]
                rows.append((rec["ts"], rec["ts"] - s["age"], r["ticker"], int(h), s["pred"],
                             s.get("lo"), s.get("hi"), alias, name, version))
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    for c in ("request_ts", "feature_ts"):
        frame[c] = pd.to_datetime(frame[c], unit="s", utc=True)
    return frame.sort_values("request_ts", kind="stable").reset_index(drop=True)
