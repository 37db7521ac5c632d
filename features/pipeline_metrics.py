"""What each pipeline step records (the ``stockray_*`` gauges of `features.telemetry.SERIES`).

One function per step, called where the step finishes: ingest (rows stored and quarantined per
source), the feature build (wall time by engine), the minute stream (arrival -> online store
lag by source), training (wall time by model family) and the walk-forward evaluation (mean
RankIC per model and horizon). Every function is a no-op returning False when no Ray cluster
is connected (`record_pipeline` never imports Ray), so the steps run the same without Ray.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

from features.telemetry import record_pipeline

_WF_RANK_IC = re.compile(r"^wf_(?P<model>.+)_rank_ic_mean$")


def record_ingest(sources: Mapping[str, Mapping]) -> bool:
    """Rows stored and quarantined per source (``IngestReport.sources``)."""
    done = False
    for name, s in sources.items():
        done = record_pipeline("stockray_rows_ingested", s["rows_ok"], source=name) or done
        done = record_pipeline("stockray_rows_quarantined", s["rows_quarantined"],
                               source=name) or done
    return done


def record_feature_build(seconds: float, engine: str) -> bool:
    return record_pipeline("stockray_feature_build_s", seconds, engine=engine)


def record_training(seconds: float, family: str) -> bool:
    return record_pipeline("stockray_training_s", seconds, family=family)


def record_stream_lag(seconds: float, source: str) -> bool:
    """One batch's arrival -> online store lag; does not wait for the metrics actor (the
    stream must not stall on it)."""
    return record_pipeline("stockray_stream_lag_s", seconds, wait=False, source=source)


def record_walkforward(summary: Mapping[str, float], horizon: int) -> bool:
    """Mean walk-forward RankIC of every model and baseline in a ``WalkForwardResult.summary``
    (keys ``wf_<name>_rank_ic_mean``)."""
    done = False
    for key, value in summary.items():
        m = _WF_RANK_IC.match(key)
        if m and math.isfinite(value):
            done = record_pipeline("stockray_walkforward_rank_ic", value,
                                   model=m["model"], horizon=str(horizon)) or done
    return done
