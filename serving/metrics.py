"""Serving metrics: what `PredictionService` records per RPC (see `features.telemetry.SERIES`).

One call per RPC (`ServingMetrics.rpc`) turns the RPC's outcome and its per-ticker summary rows
(the same rows the audit log keeps) into counters and histograms: requests by status code,
latency, forecasts by model/horizon/alias, the forecast distribution, feature age, stale
forecasts and champion-vs-challenger agreement when shadow scoring is on. Cache results and
explanation time are recorded where they happen.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from features.telemetry import SERIES, Recorder

SERVING_SERIES = tuple(n for n, s in SERIES.items() if s.kind != "gauge")


class ServingMetrics:
    """Records the serving series; a disabled instance costs one attribute check per call."""

    def __init__(self, recorder: Recorder | None = None) -> None:
        self.recorder = recorder if recorder is not None else Recorder(SERVING_SERIES)
        self.enabled = self.recorder.enabled

    def rpc(self, rpc: str, code: str, latency_ms: float, rows: Iterable[dict] = ()) -> None:
        """One answered RPC: its status, latency and every (ticker, horizon) it served."""
        if not self.enabled:
            return
        r = self.recorder.record
        r("stockray_requests", 1, {"rpc": rpc, "code": code})
        r("stockray_request_latency_ms", latency_ms, {"rpc": rpc})
        for row in rows:
            aged = False
            for h, s in (row.get("h") or {}).items():
                if not isinstance(s, dict):  # Explain rows carry the value only
                    continue
                model = s["model"].split(":")[1] if ":" in s["model"] else s["model"]
                alias = s["model"].split(":")[0] if ":" in s["model"] else ""
                tags = {"model": model, "horizon": str(h)}
                r("stockray_predictions", 1, {**tags, "alias": alias})
                if math.isfinite(s["pred"]):
                    r("stockray_predicted_abs_return", abs(s["pred"]),
                      {**tags, "direction": "up" if s["pred"] > 0 else "down"})
                if s.get("stale"):
                    r("stockray_stale_predictions", 1, tags)
                age = s.get("age")
                if not aged and age is not None and math.isfinite(age):
                    r("stockray_feature_age_s", age, {})  # one row, one age: once per ticker
                    aged = True
                shadow = (row.get("shadow") or {}).get(h)
                if shadow is not None and math.isfinite(shadow["pred"]):
                    agree = "yes" if (shadow["pred"] > 0) == (s["pred"] > 0) else "no"
                    r("stockray_shadow_comparisons", 1, {"horizon": str(h), "agree": agree})
                    r("stockray_shadow_abs_diff", abs(shadow["pred"] - s["pred"]),
                      {"horizon": str(h)})

    def explain(self, rpc: str, ms: float) -> None:
        if self.enabled:
            self.recorder.record("stockray_explain_latency_ms", ms, {"rpc": rpc})

    def stage_retry(self, stage: str, error: str) -> None:
        """One stage call resent after its replica died (``serving.deployments.retry``)."""
        if self.enabled:
            self.recorder.record("stockray_stage_retries", 1, {"stage": stage, "error": error})

    def cache(self, hits: int, misses: int) -> None:
        if not self.enabled:
            return
        if hits:
            self.recorder.record("stockray_feature_cache", hits, {"result": "hit"})
        if misses:
            self.recorder.record("stockray_feature_cache", misses, {"result": "miss"})
