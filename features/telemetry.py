"""Prometheus series of stockray, exported through Ray (``ray.util.metrics``).

Ray's metrics agent on each node exposes what workers, actors and drivers record to
Prometheus (its targets are listed in ``<ray temp>/prom_metrics_service_discovery.json``;
``cluster/prometheus.yml`` reads that file). Ray prefixes every custom series with ``ray_``
and Prometheus adds ``_total`` to counters, ``_bucket/_sum/_count`` to histograms: the names
dashboards and alert rules must use are `exported_names`.

`SERIES` is the one table of everything stockray records. `Recorder` records into Ray when a
Ray worker or driver is connected and does nothing otherwise, so the same code runs in tests
and in the bare gRPC server. Pipeline jobs record through `PipelineMetrics`, a detached actor,
so a job's figures stay scrapeable after the job's driver exits.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from dataclasses import dataclass

LATENCY_MS = (0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 1000.0)
# Ray histograms take positive bucket bounds only: returns are recorded as |r| by direction.
ABS_RETURN_BOUNDS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1)
AGE_S = (60.0, 900.0, 3600.0, 6 * 3600.0, 86400.0, 2 * 86400.0, 4 * 86400.0, 7 * 86400.0)
DIFF_BOUNDS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05)


@dataclass(frozen=True)
class Series:
    """One series: kind (counter | histogram | gauge), help text, tag keys, buckets."""

    kind: str
    help: str
    tags: tuple[str, ...] = ()
    buckets: tuple[float, ...] = ()


SERIES: dict[str, Series] = {
    # serving (recorded by serving.metrics in the replicas)
    "stockray_requests": Series("counter", "RPCs answered, by RPC and gRPC status code",
                                ("rpc", "code")),
    "stockray_request_latency_ms": Series("histogram", "Service time of an RPC (ms)",
                                          ("rpc",), LATENCY_MS),
    "stockray_predictions": Series("counter", "Forecasts served (one per ticker and horizon)",
                                   ("model", "horizon", "alias")),
    "stockray_predicted_abs_return": Series("histogram", "|served forward log return| by "
                                            "direction (up / down)",
                                            ("model", "horizon", "direction"),
                                            ABS_RETURN_BOUNDS),
    "stockray_feature_age_s": Series("histogram", "Age of the features a forecast used (s), "
                                     "once per ticker answered", (), AGE_S),
    "stockray_stale_predictions": Series("counter", "Forecasts flagged stale",
                                         ("model", "horizon")),
    "stockray_feature_cache": Series("counter", "Online feature lookups by cache result",
                                     ("result",)),
    "stockray_stage_retries": Series("counter", "Ingress calls to a stage resent once after "
                                     "its replica died (split mode)", ("stage", "error")),
    "stockray_explain_latency_ms": Series("histogram", "Time to explain one request (ms)",
                                          ("rpc",), LATENCY_MS),
    "stockray_shadow_comparisons": Series("counter", "Champion vs challenger forecasts compared"
                                          " (agree = same sign)", ("horizon", "agree")),
    "stockray_shadow_abs_diff": Series("histogram", "|champion - challenger| forecast",
                                       ("horizon",), DIFF_BOUNDS),
    # pipeline (recorded by the jobs through PipelineMetrics)
    "stockray_rows_ingested": Series("gauge", "Rows accepted into the lake by the last run",
                                     ("source",)),
    "stockray_rows_quarantined": Series("gauge", "Rows quarantined by the last run",
                                        ("source",)),
    "stockray_feature_build_s": Series("gauge", "Wall time of the last feature build (s)",
                                       ("engine",)),
    "stockray_training_s": Series("gauge", "Wall time of the last training run (s)",
                                  ("family",)),
    "stockray_walkforward_rank_ic": Series("gauge", "Walk-forward mean RankIC of the last "
                                           "evaluation", ("model", "horizon")),
    "stockray_stream_lag_s": Series("gauge", "Bar arrival -> online store lag of the stream",
                                    ("source",)),
}


def exported_names(name: str) -> tuple[str, ...]:
    """The Prometheus series a `SERIES` entry appears as (what queries must name)."""
    s = SERIES[name]
    base = f"ray_{name}"
    if s.kind == "counter":
        return (f"{base}_total",)
    if s.kind == "histogram":
        return (f"{base}_bucket", f"{base}_sum", f"{base}_count")
    return (base,)


class Recorder:
    """Records `SERIES` into Ray's metrics, or nowhere when Ray is not connected."""

    def __init__(self, names: tuple[str, ...] | None = None, enabled: bool | None = None):
        if enabled is None:  # never import Ray just to learn that it is not running
            ray = sys.modules.get("ray")
            enabled = bool(ray is not None and ray.is_initialized())
        self.enabled = enabled
        self._m: dict = {}
        if not self.enabled:
            return
        from ray.util import metrics as rm

        for name in names or tuple(SERIES):
            s = SERIES[name]
            if s.kind == "counter":
                self._m[name] = rm.Counter(name, s.help, tag_keys=s.tags)
            elif s.kind == "histogram":
                self._m[name] = rm.Histogram(name, s.help, boundaries=list(s.buckets),
                                             tag_keys=s.tags)
            else:
                self._m[name] = rm.Gauge(name, s.help, tag_keys=s.tags)

    def record(self, name: str, value: float, tags: Mapping[str, str] | None = None) -> None:
        """Add to a counter, observe a histogram, or set a gauge."""
        m = self._m.get(name)
        if m is None:
            if name not in SERIES:
                raise KeyError(f"unknown series {name!r}")
            return
        tags = {k: str(v) for k, v in (tags or {}).items()}
        if SERIES[name].kind == "counter":
            m.inc(value, tags=tags)
        elif SERIES[name].kind == "histogram":
            m.observe(value, tags=tags)
        else:
            m.set(value, tags=tags)


PIPELINE_ACTOR = "stockray-pipeline-metrics"
GAUGE_REFRESH_S = 4.0


def _actor_class():
    import ray

    @ray.remote(num_cpus=0)
    class PipelineMetrics:
        """Holds the pipeline gauges for the cluster's lifetime (detached, named).

        Ray drops a gauge from its export about 10 s after the last ``set``, so the actor sets
        every last value again every `GAUGE_REFRESH_S` (a gauge means "the last run's figure").
        """

        def __init__(self) -> None:
            import threading

            names = tuple(n for n, s in SERIES.items() if s.kind == "gauge")
            self.recorder = Recorder(names, enabled=True)
            self.last: dict[str, dict] = {}
            self._lock = threading.Lock()
            threading.Thread(target=self._refresh, daemon=True).start()

        def _refresh(self) -> None:
            import time

            while True:
                time.sleep(GAUGE_REFRESH_S)
                with self._lock:
                    items = list(self.last.values())
                for it in items:
                    self.recorder.record(it["name"], it["value"], it["tags"])

        def record(self, name: str, value: float, tags: dict) -> None:
            self.recorder.record(name, value, tags)
            with self._lock:
                self.last[f"{name}{sorted(tags.items())}"] = {"name": name, "value": value,
                                                              "tags": tags}

        def snapshot(self) -> dict:
            return dict(self.last)

    return PipelineMetrics


_actor_cache: dict = {}


def _pipeline_actor(ray):
    """The cluster's metrics actor, created on first use; one handle per Ray session (a node
    id and job id: a new local cluster in the same process reuses job id 01000000)."""
    ctx = ray.get_runtime_context()
    key = (ctx.get_node_id(), ctx.get_job_id())
    if key not in _actor_cache:
        _actor_cache.clear()
        _actor_cache[key] = _actor_class().options(
            name=PIPELINE_ACTOR, lifetime="detached", get_if_exists=True,
            namespace="stockray").remote()
    return _actor_cache[key]


def record_pipeline(name: str, value: float, wait: bool = True, **tags: str) -> bool:
    """Set a pipeline gauge on the cluster's metrics actor; False when Ray is not connected
    or the gauge could not be set (logged: a metric never fails the step it measures).

    ``wait=False`` returns without waiting for the actor (for per-batch figures)."""
    if SERIES[name].kind != "gauge":
        raise ValueError(f"{name} is a {SERIES[name].kind}; pipeline metrics are gauges")
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return False
    args = (name, float(value), {k: str(v) for k, v in tags.items()})
    for attempt in (1, 2):
        try:
            ref = _pipeline_actor(ray).record.remote(*args)
            if wait:
                ray.get(ref, timeout=30)
            return True
        except Exception as e:  # noqa: BLE001 - a dead/stale actor handle: fetch it again once
            _actor_cache.clear()
            if attempt == 2:
                logging.getLogger(__name__).warning("pipeline gauge %s not recorded: %s",
                                                    name, e)
    return False
