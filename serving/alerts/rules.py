"""Alert rules (declared in YAML) and the evaluators that turn observations into alerts.

Three kinds of rule, each with a ``when`` condition:

- ``prediction``: ``move`` (|predicted return| >= threshold), ``direction_flip`` (the sign of a
  ticker/horizon forecast changed since the last one seen), ``interval_breach`` (the realised
  return fell outside the interval served for it).
- ``data_quality``: ``quarantine_spike`` (share of rows quarantined in a run >= threshold),
  ``stale_source`` (a source's newest bar older than ``max_age_days``).
- ``model_health``: ``metric_below`` / ``metric_above`` on a monitoring metric (e.g. rolling
  rank IC per model and horizon).

An `Alert` has a deterministic ``id`` (rule, subject and the observation's time): evaluating
the same observation twice gives the same id, which sinks send as an idempotency key.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

Kind = Literal["prediction", "data_quality", "model_health"]
_WHEN: dict[str, set[str]] = {
    "prediction": {"move", "direction_flip", "interval_breach"},
    "data_quality": {"quarantine_spike", "stale_source"},
    "model_health": {"metric_below", "metric_above"},
}


class Rule(BaseModel):
    """One alert rule of the YAML file."""

    model_config = ConfigDict(extra="forbid")

    name: str
    kind: Kind
    when: str
    severity: Literal["info", "warning", "critical"] = "warning"
    threshold: float | None = None
    horizons: list[int] | None = Field(None, description="prediction rules: horizons watched")
    tickers: list[str] | None = Field(None, description="prediction rules: tickers watched")
    max_age_days: float | None = None
    metric: str | None = None

    @model_validator(mode="after")
    def _check(self) -> Rule:
        if self.when not in _WHEN[self.kind]:
            raise ValueError(f"rule {self.name!r}: when={self.when!r} is not a {self.kind} "
                             f"condition; use one of {sorted(_WHEN[self.kind])}")
        needs = {"move": "threshold", "quarantine_spike": "threshold",
                 "stale_source": "max_age_days", "metric_below": "threshold",
                 "metric_above": "threshold"}.get(self.when)
        if needs and getattr(self, needs) is None:
            raise ValueError(f"rule {self.name!r} ({self.when}) needs {needs}")
        if self.kind == "model_health" and not self.metric:
            raise ValueError(f"rule {self.name!r} ({self.when}) needs metric")
        return self


class SinkConfig(BaseModel):
    """Where alerts go. Secrets are named by environment variable, never written here."""

    model_config = ConfigDict(extra="forbid")

    name: str
    type: Literal["webhook", "email", "sms", "file"]
    url: str | None = None                      # webhook
    secret_env: str | None = None               # webhook HMAC secret
    host: str | None = None                     # email (SMTP)
    port: int | None = None
    starttls: bool = False
    username_env: str | None = None
    password_env: str | None = None
    sender: str | None = None                   # email From / SMS From
    to: list[str] = Field(default_factory=list)  # email or SMS recipients
    base_url: str | None = None                 # SMS provider API root
    account_sid_env: str | None = None
    auth_token_env: str | None = None
    path: str | None = None                     # file sink
    min_severity: Literal["info", "warning", "critical"] = "info"
    attempts: int = Field(5, ge=1, le=20)
    timeout_s: float = Field(5.0, gt=0)

    @model_validator(mode="after")
    def _check(self) -> SinkConfig:
        required = {"webhook": ("url", "secret_env"), "email": ("host", "sender"),
                    "sms": ("base_url", "account_sid_env", "auth_token_env", "sender"),
                    "file": ("path",)}[self.type]
        missing = [k for k in required if not getattr(self, k)]
        if missing:
            raise ValueError(f"sink {self.name!r} ({self.type}) needs {', '.join(missing)}")
        if self.type in ("email", "sms") and not self.to:
            raise ValueError(f"sink {self.name!r} ({self.type}) needs at least one 'to'")
        return self


class AlertConfig(BaseModel):
    """The alert file: rules and sinks."""

    model_config = ConfigDict(extra="forbid")

    rules: list[Rule]
    sinks: list[SinkConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique(self) -> AlertConfig:
        for what, names in (("rule", [r.name for r in self.rules]),
                            ("sink", [s.name for s in self.sinks])):
            dup = sorted({n for n in names if names.count(n) > 1})
            if dup:
                raise ValueError(f"duplicate {what} names: {dup}")
        return self


def load_alert_config(path: str | os.PathLike[str]) -> AlertConfig:
    """Read and validate an alert YAML file (errors name the rule or sink at fault)."""
    raw = yaml.safe_load(Path(path).read_text())
    return AlertConfig.model_validate(raw or {})


SEVERITY_ORDER = {"info": 0, "warning": 1, "critical": 2}


@dataclass(frozen=True)
class Alert:
    """One fired rule: what, about whom, why, and the figures behind it."""

    id: str
    rule: str
    kind: str
    severity: str
    subject: str
    message: str
    observed_at: str
    figures: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":")).encode()


def _alert(rule: Rule, subject: str, observed_at: str, message: str, **figures) -> Alert:
    key = f"{rule.name}|{subject}|{observed_at}".encode()
    return Alert(id=hashlib.sha256(key).hexdigest()[:32], rule=rule.name, kind=rule.kind,
                 severity=rule.severity, subject=subject, message=message,
                 observed_at=observed_at, figures=figures)


@dataclass(frozen=True)
class PredictionObservation:
    """A served forecast (one ticker, one horizon) and, once known, its realised return."""

    ticker: str
    horizon: int
    predicted_return: float
    as_of: str
    interval: tuple[float, float] | None = None
    realised_return: float | None = None
    model: str = ""
    version: str = ""


def _watched(rule: Rule, obs: PredictionObservation) -> bool:
    return ((rule.horizons is None or obs.horizon in rule.horizons)
            and (rule.tickers is None or obs.ticker in rule.tickers))


def prediction_alerts(rules: Iterable[Rule], observations: Iterable[PredictionObservation],
                      previous: Mapping[str, float] | None = None) -> tuple[list[Alert],
                                                                          dict[str, float]]:
    """Evaluate prediction rules.

    Args:
        rules: every rule (non-prediction ones are ignored).
        observations: forecasts, newest last per (ticker, horizon).
        previous: ``"<ticker>/<horizon>" -> last predicted return`` from the previous run
            (direction flips are measured against it).

    Returns:
        The alerts, and the updated ``previous`` map to keep for the next run.
    """
    rules = [r for r in rules if r.kind == "prediction"]
    last = dict(previous or {})
    out: list[Alert] = []
    for obs in observations:
        key = f"{obs.ticker}/{obs.horizon}"
        subject = f"{obs.ticker} {obs.horizon}d"
        p = float(obs.predicted_return)
        for r in (r for r in rules if _watched(r, obs)):
            if r.when == "move" and math.isfinite(p) and abs(p) >= float(r.threshold):
                out.append(_alert(r, subject, obs.as_of,
                                  f"{subject}: predicted log return {p:+.4f} beyond "
                                  f"±{r.threshold:g}", predicted_return=p,
                                  threshold=r.threshold, model=obs.model, version=obs.version))
            elif r.when == "direction_flip" and key in last and math.isfinite(p):
                before = last[key]
                if before * p < 0:
                    out.append(_alert(r, subject, obs.as_of,
                                      f"{subject}: forecast flipped from {before:+.4f} to "
                                      f"{p:+.4f}", previous=before, predicted_return=p,
                                      model=obs.model, version=obs.version))
            elif (r.when == "interval_breach" and obs.interval is not None
                  and obs.realised_return is not None):
                lo, hi = obs.interval
                y = float(obs.realised_return)
                if not lo <= y <= hi:
                    out.append(_alert(r, subject, obs.as_of,
                                      f"{subject}: realised {y:+.4f} outside the served "
                                      f"interval [{lo:+.4f}, {hi:+.4f}]", realised_return=y,
                                      lower=lo, upper=hi, model=obs.model,
                                      version=obs.version))
        if math.isfinite(p):
            last[key] = p
    return out, last


def quality_alerts(rules: Iterable[Rule], *, run_id: str, rows: int, quarantined: int,
                   newest_bar: Mapping[str, str], now: datetime | None = None) -> list[Alert]:
    """Evaluate data-quality rules on one ingest/feature run.

    Args:
        run_id: the run's id (part of the alert id).
        rows: rows read in the run; ``quarantined``: rows rejected.
        newest_bar: source (or ticker) -> ISO time of its newest stored bar.
        now: the current time (UTC); defaults to now.
    """
    now = now or datetime.now(UTC)
    out = []
    for r in (r for r in rules if r.kind == "data_quality"):
        if r.when == "quarantine_spike" and rows > 0:
            share = quarantined / rows
            if share >= float(r.threshold):
                out.append(_alert(r, "ingest", run_id,
                                  f"run {run_id}: {quarantined} of {rows} rows quarantined "
                                  f"({share:.1%} >= {r.threshold:.1%})", rows=rows,
                                  quarantined=quarantined, share=share))
        elif r.when == "stale_source":
            for source, ts in sorted(newest_bar.items()):
                t = datetime.fromisoformat(str(ts))
                t = t if t.tzinfo else t.replace(tzinfo=UTC)
                age = (now - t).total_seconds() / 86400.0
                if age > float(r.max_age_days):
                    out.append(_alert(r, source, f"{run_id}",
                                      f"{source}: newest bar {t.date()} is {age:.1f} days old "
                                      f"(> {r.max_age_days:g})", newest_bar=str(ts),
                                      age_days=round(age, 2)))
    return out


def health_alerts(rules: Iterable[Rule], metrics: Mapping[str, Mapping[str, float]], *,
                  observed_at: str) -> list[Alert]:
    """Evaluate model-health rules on monitoring metrics (``model -> metric -> value``)."""
    out = []
    for r in (r for r in rules if r.kind == "model_health"):
        for model, values in sorted(metrics.items()):
            v = values.get(r.metric)
            if v is None or not math.isfinite(float(v)):
                continue
            below = r.when == "metric_below" and v < r.threshold
            above = r.when == "metric_above" and v > r.threshold
            if below or above:
                word = "below" if below else "above"
                out.append(_alert(r, model, observed_at,
                                  f"{model}: {r.metric} = {v:.4f} {word} {r.threshold:g}",
                                  metric=r.metric, value=float(v), threshold=r.threshold))
    return out
