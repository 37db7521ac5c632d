"""Alert sinks (signed webhook, SMTP email, Twilio-format SMS, JSONL file) and delivery.

Delivery retries transient failures (timeouts, refused connections, HTTP 429/5xx, SMTP 4xx)
with jittered exponential backoff (tenacity), honouring ``Retry-After``; a permanent failure
or the last failed attempt writes the alert to the sink's dead-letter file
(``<data_dir>/alerts/dead_letter/<sink>.jsonl``), which `replay` sends again. Secrets come
from the environment variables the config names and never appear in logs or errors.
"""

from __future__ import annotations

import json
import logging
import os
import smtplib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path

import httpx
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)

from features.durable import atomic_write_text
from serving.alerts.rules import SEVERITY_ORDER, Alert, AlertConfig, SinkConfig
from serving.alerts.signing import IDEMPOTENCY_HEADER, SIGNATURE_HEADER, sign

log = logging.getLogger(__name__)
USER_AGENT = "stockray-alerts/1"
#: Longest ``Retry-After`` we wait for; a longer one is treated as a failed attempt.
MAX_RETRY_AFTER_S = 30.0
#: Twilio caps a message body at 1,600 characters.
SMS_MAX_CHARS = 1600


class DeliveryError(RuntimeError):
    """A delivery attempt failed; ``transient`` ones are retried."""

    def __init__(self, message: str, *, transient: bool, retry_after: float | None = None):
        super().__init__(message)
        self.transient = transient
        self.retry_after = retry_after


def _secret(env: str | None, what: str) -> str:
    value = os.environ.get(env or "")
    if not value:
        raise DeliveryError(f"{what}: environment variable {env} is not set", transient=False)
    return value


def _http_error(resp: httpx.Response, what: str) -> DeliveryError:
    transient = resp.status_code == 429 or resp.status_code >= 500
    retry_after = None
    if resp.headers.get("Retry-After", "").strip().isdigit():
        retry_after = float(resp.headers["Retry-After"])
    return DeliveryError(f"{what}: HTTP {resp.status_code}", transient=transient,
                         retry_after=retry_after)


def _post(client: httpx.Client, what: str, url: str, **kw) -> httpx.Response:
    try:
        resp = client.post(url, **kw)
    except httpx.TransportError as e:  # timeouts, refused connections, resets
        raise DeliveryError(f"{what}: {type(e).__name__}", transient=True) from None
    if resp.status_code >= 300:
        raise _http_error(resp, what)
    return resp


class WebhookSink:
    """POST the alert JSON, signed (`serving.alerts.signing`), with an idempotency key."""

    def __init__(self, cfg: SinkConfig, client: httpx.Client | None = None) -> None:
        self.cfg = cfg
        self.client = client or httpx.Client(timeout=cfg.timeout_s)

    def send(self, alert: Alert) -> None:
        body = alert.to_json()
        secret = _secret(self.cfg.secret_env, f"webhook {self.cfg.name}")
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT,
                   SIGNATURE_HEADER: sign(secret, body), IDEMPOTENCY_HEADER: alert.id}
        _post(self.client, f"webhook {self.cfg.name}", self.cfg.url, content=body,
              headers=headers)


class SmsSink:
    """Twilio's Messages API format: form POST per recipient, HTTP basic auth SID:token."""

    def __init__(self, cfg: SinkConfig, client: httpx.Client | None = None) -> None:
        self.cfg = cfg
        self.client = client or httpx.Client(timeout=cfg.timeout_s)

    def send(self, alert: Alert) -> None:
        sid = _secret(self.cfg.account_sid_env, f"sms {self.cfg.name}")
        token = _secret(self.cfg.auth_token_env, f"sms {self.cfg.name}")
        url = f"{self.cfg.base_url.rstrip('/')}/2010-04-01/Accounts/{sid}/Messages.json"
        text = f"[stockray {alert.severity}] {alert.message}"[:SMS_MAX_CHARS]
        for to in self.cfg.to:
            _post(self.client, f"sms {self.cfg.name}", url, auth=(sid, token),
                  data={"To": to, "From": self.cfg.sender, "Body": text},
                  headers={"User-Agent": USER_AGENT})


class EmailSink:
    """Plain-text email through SMTP (STARTTLS and login when configured)."""

    def __init__(self, cfg: SinkConfig) -> None:
        self.cfg = cfg

    def send(self, alert: Alert) -> None:
        self.send_message(
            f"[stockray {alert.severity}] {alert.rule}: {alert.subject}",
            f"{alert.message}\n\n{json.dumps(alert.figures, indent=2)}\n\n"
            f"alert id {alert.id}, observed {alert.observed_at}\n",
            message_id=f"<{alert.id}@stockray>")  # the idempotency key, for dedupe

    def send_message(self, subject: str, body: str, *, message_id: str | None = None,
                     attachments: Iterable[Path] = ()) -> None:
        """One email (attachments by file type: PDF, HTML, JSON, else octet-stream)."""
        msg = EmailMessage()
        msg["Subject"] = subject
        msg["From"] = self.cfg.sender
        msg["To"] = ", ".join(self.cfg.to)
        if message_id:
            msg["Message-ID"] = message_id
        msg.set_content(body)
        for path in attachments:
            sub = {".pdf": ("application", "pdf"), ".html": ("text", "html"),
                   ".json": ("application", "json")}.get(Path(path).suffix,
                                                         ("application", "octet-stream"))
            msg.add_attachment(Path(path).read_bytes(), maintype=sub[0], subtype=sub[1],
                               filename=Path(path).name)
        what = f"email {self.cfg.name}"
        try:
            with smtplib.SMTP(self.cfg.host, self.cfg.port or 25,
                              timeout=self.cfg.timeout_s) as smtp:
                if self.cfg.starttls:
                    smtp.starttls()
                if self.cfg.username_env:
                    smtp.login(_secret(self.cfg.username_env, what),
                               _secret(self.cfg.password_env, what))
                smtp.send_message(msg)
        except smtplib.SMTPResponseException as e:  # 4xx: try later; 5xx: never
            raise DeliveryError(f"{what}: SMTP {e.smtp_code}", transient=e.smtp_code < 500) \
                from None
        except (smtplib.SMTPException, OSError) as e:
            raise DeliveryError(f"{what}: {type(e).__name__}", transient=True) from None


class FileSink:
    """Append alerts as JSON lines (local use and tests of the alert path)."""

    def __init__(self, cfg: SinkConfig) -> None:
        self.path = Path(cfg.path)

    def send(self, alert: Alert) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "ab") as f:
            f.write(alert.to_json() + b"\n")


def build_sink(cfg: SinkConfig):
    """The sink object for one configured sink."""
    return {"webhook": WebhookSink, "sms": SmsSink, "email": EmailSink,
            "file": FileSink}[cfg.type](cfg)


@dataclass
class SinkReport:
    """What one delivery round did for one sink."""

    delivered: int = 0
    dead_lettered: int = 0
    attempts: int = 0
    errors: list[str] = field(default_factory=list)  # one per failed attempt, in order


def _wait(base: Callable[[RetryCallState], float]) -> Callable[[RetryCallState], float]:
    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        ra = getattr(exc, "retry_after", None)
        if ra is not None and ra <= MAX_RETRY_AFTER_S:
            return float(ra)
        return base(state)
    return wait


class Dispatcher:
    """Deliver alerts to every configured sink, with retries and a dead-letter file."""

    def __init__(self, config: AlertConfig, data_dir: str | os.PathLike[str], *,
                 backoff_s: float = 0.5, max_backoff_s: float = 10.0,
                 sinks: dict | None = None) -> None:
        self.config = config
        self.dead_dir = Path(data_dir) / "alerts" / "dead_letter"
        self.backoff_s, self.max_backoff_s = backoff_s, max_backoff_s
        self.sinks = sinks or {s.name: build_sink(s) for s in config.sinks}

    def dead_letter_path(self, sink: str) -> Path:
        return self.dead_dir / f"{sink}.jsonl"

    def _send(self, cfg: SinkConfig, alert: Alert, rep: SinkReport) -> bool:
        return self._with_retries(cfg, lambda: self.sinks[cfg.name].send(alert), rep,
                                  what=f"alert {alert.id}")

    def _with_retries(self, cfg: SinkConfig, attempt_fn, rep: SinkReport, what: str) -> bool:
        retrying = Retrying(
            stop=stop_after_attempt(cfg.attempts),
            wait=_wait(wait_random_exponential(multiplier=self.backoff_s,
                                               max=self.max_backoff_s)),
            retry=retry_if_exception(lambda e: isinstance(e, DeliveryError) and e.transient),
            # every failed attempt is reported, also those a later attempt made good
            before_sleep=lambda st: rep.errors.append(str(st.outcome.exception())),
            reraise=True)
        try:
            for attempt in retrying:
                with attempt:
                    rep.attempts += 1
                    attempt_fn()
            return True
        except DeliveryError as e:
            rep.errors.append(str(e))
            log.warning("%s to %s failed after %d attempt(s): %s", what, cfg.name,
                        retrying.statistics.get("attempt_number", 1), e)
            return False

    def send_email(self, sink: str, subject: str, body: str,
                   attachments: Iterable[Path] = ()) -> SinkReport:
        """An email with attachments (e.g. the daily report) through an email sink, retried."""
        cfg = next((s for s in self.config.sinks if s.name == sink and s.type == "email"), None)
        if cfg is None:
            raise KeyError(f"no email sink named {sink!r}")
        rep = SinkReport()
        ok = self._with_retries(cfg, lambda: self.sinks[sink].send_message(
            subject, body, attachments=list(attachments)), rep, what=f"email {subject!r}")
        rep.delivered, rep.dead_lettered = int(ok), 0
        return rep

    def deliver(self, alerts: Iterable[Alert]) -> dict[str, SinkReport]:
        """Send each alert to every sink whose ``min_severity`` it reaches."""
        alerts = list(alerts)
        reports = {}
        for cfg in self.config.sinks:
            rep = reports[cfg.name] = SinkReport()
            for alert in alerts:
                if SEVERITY_ORDER[alert.severity] < SEVERITY_ORDER[cfg.min_severity]:
                    continue
                if self._send(cfg, alert, rep):
                    rep.delivered += 1
                else:
                    rep.dead_lettered += 1
                    self._dead_letter(cfg.name, alert, rep.errors[-1])
        return reports

    def _dead_letter(self, sink: str, alert: Alert, error: str) -> None:
        path = self.dead_letter_path(sink)
        path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps({"alert": json.loads(alert.to_json()), "error": error,
                           "failed_at": time.time()}, sort_keys=True)
        with open(path, "a") as f:
            f.write(line + "\n")
            f.flush()
            os.fsync(f.fileno())

    def replay(self, sink: str) -> SinkReport:
        """Send the sink's dead letters again; those that fail again stay in the file."""
        cfg = next((s for s in self.config.sinks if s.name == sink), None)
        if cfg is None:
            raise KeyError(f"no sink named {sink!r}; configured: "
                           f"{[s.name for s in self.config.sinks]}")
        path = self.dead_letter_path(sink)
        rep = SinkReport()
        if not path.exists():
            return rep
        keep = []
        for line in path.read_text().splitlines():
            if not line.strip():
                continue
            entry = json.loads(line)
            alert = Alert(**entry["alert"])
            if self._send(cfg, alert, rep):
                rep.delivered += 1
            else:
                rep.dead_lettered += 1
                keep.append(json.dumps({**entry, "error": rep.errors[-1],
                                        "failed_at": time.time()}, sort_keys=True))
        atomic_write_text(path, "".join(k + "\n" for k in keep))
        return rep
