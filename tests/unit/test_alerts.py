"""Alerts: rules from YAML, signed webhooks with retries / dead letter / replay, SMTP email
against a local aiosmtpd server, Twilio-format SMS against a local HTTP server."""

from __future__ import annotations

import base64
import json
import threading
import time
import urllib.parse
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from pydantic import ValidationError

from serving.alerts.rules import (
    AlertConfig,
    PredictionObservation,
    health_alerts,
    load_alert_config,
    prediction_alerts,
    quality_alerts,
)
from serving.alerts.signing import (
    IDEMPOTENCY_HEADER,
    SIGNATURE_HEADER,
    SignatureError,
    sign,
    verify,
)
from serving.alerts.sinks import Dispatcher
from tests.conftest import free_port

SECRET = "whsec-test-0123456789"


class Recorder:
    """A local HTTP server whose answers are scripted: a list of (status, headers, delay)."""

    def __init__(self, script=None):
        self.script = list(script or [])
        self.requests: list[dict] = []
        rec = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                rec.requests.append({"path": self.path, "headers": dict(self.headers),
                                     "body": body, "t": time.monotonic()})
                status, headers, delay = rec.script.pop(0) if rec.script else (200, {}, 0)
                time.sleep(delay)
                payload = b'{"sid": "SM0001", "status": "queued"}' if status < 300 else b"{}"
                try:
                    self.send_response(status)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def recorder():
    servers = []

    def make(script=None):
        servers.append(Recorder(script))
        return servers[-1]

    yield make
    for s in servers:
        s.close()


def _config(**sink) -> AlertConfig:
    return AlertConfig.model_validate({
        "rules": [{"name": "big_move", "kind": "prediction", "when": "move", "threshold": 0.02}],
        "sinks": [sink]})


def _alert():
    alerts, _ = prediction_alerts(_config(name="f", type="file", path="x").rules,
                                  [PredictionObservation("AAPL", 5, 0.031, "2026-12-04")])
    return alerts[0]


# --- rules ---------------------------------------------------------------------------------

def test_shipped_alert_config_loads():
    cfg = load_alert_config("configs/alerts.yaml")
    kinds = {r.kind for r in cfg.rules}
    assert kinds == {"prediction", "data_quality", "model_health"}
    assert {s.type for s in cfg.sinks} >= {"webhook", "email", "sms"}


def test_rule_validation_names_the_rule():
    with pytest.raises(ValidationError, match="big.*needs threshold"):
        AlertConfig.model_validate({"rules": [{"name": "big", "kind": "prediction",
                                               "when": "move"}]})
    with pytest.raises(ValidationError, match="not a prediction condition"):
        AlertConfig.model_validate({"rules": [{"name": "x", "kind": "prediction",
                                               "when": "stale_source"}]})
    with pytest.raises(ValidationError, match="needs url, secret_env"):
        _config(name="hook", type="webhook")


def test_prediction_rules_move_flip_breach():
    rules = AlertConfig.model_validate({"rules": [
        {"name": "move", "kind": "prediction", "when": "move", "threshold": 0.02,
         "horizons": [5]},
        {"name": "flip", "kind": "prediction", "when": "direction_flip"},
        {"name": "breach", "kind": "prediction", "when": "interval_breach"}]}).rules
    obs = [PredictionObservation("AAPL", 5, 0.025, "d1"),
           PredictionObservation("AAPL", 1, 0.05, "d1"),  # horizon not watched by "move"
           PredictionObservation("IBM", 5, -0.004, "d1", interval=(-0.01, 0.01),
                                 realised_return=0.02)]
    alerts, last = prediction_alerts(rules, obs, previous={"AAPL/5": -0.01, "IBM/5": -0.002})
    fired = sorted((a.rule, a.subject) for a in alerts)
    assert fired == [("breach", "IBM 5d"), ("flip", "AAPL 5d"), ("move", "AAPL 5d")]
    assert last == {"AAPL/5": 0.025, "AAPL/1": 0.05, "IBM/5": -0.004}
    again, _ = prediction_alerts(rules, obs, previous={"AAPL/5": -0.01, "IBM/5": -0.002})
    assert [a.id for a in again] == [a.id for a in alerts]  # deterministic idempotency keys


def test_quality_and_health_rules():
    cfg = AlertConfig.model_validate({"rules": [
        {"name": "spike", "kind": "data_quality", "when": "quarantine_spike", "threshold": 0.05},
        {"name": "stale", "kind": "data_quality", "when": "stale_source", "max_age_days": 4},
        {"name": "ic", "kind": "model_health", "when": "metric_below", "metric": "rank_ic_60d",
         "threshold": 0.0}]})
    now = datetime(2026, 12, 5, tzinfo=UTC)
    q = quality_alerts(cfg.rules, run_id="r1", rows=1000, quarantined=80,
                       newest_bar={"yahoo": "2026-12-04", "fred": "2026-11-20"}, now=now)
    assert sorted((a.rule, a.subject) for a in q) == [("spike", "ingest"), ("stale", "fred")]
    assert q[0].figures["share"] == pytest.approx(0.08)
    h = health_alerts(cfg.rules, {"lgbm-h5": {"rank_ic_60d": -0.03},
                                  "lstm-h5": {"rank_ic_60d": 0.02}}, observed_at="2026-12-05")
    assert [a.subject for a in h] == ["lgbm-h5"] and h[0].figures["value"] == -0.03


# --- signing --------------------------------------------------------------------------------

def test_signature_roundtrip_tamper_and_stale():
    body = b'{"a":1}'
    header = sign(SECRET, body, timestamp=1_000_000)
    assert verify(SECRET, body, header, now=1_000_010) == 1_000_000
    with pytest.raises(SignatureError, match="does not match"):
        verify(SECRET, b'{"a":2}', header, now=1_000_010)
    with pytest.raises(SignatureError, match="does not match"):
        verify("other-secret", body, header, now=1_000_010)
    with pytest.raises(SignatureError, match="tolerance"):
        verify(SECRET, body, header, now=1_000_000 + 301)
    with pytest.raises(SignatureError, match="malformed"):
        verify(SECRET, body, "v1=abc", now=1_000_000)


# --- webhook ----------------------------------------------------------------------------------

def test_webhook_retries_transient_failures_with_one_idempotency_key(recorder, tmp_path,
                                                                      monkeypatch, caplog):
    monkeypatch.setenv("HOOK_SECRET", SECRET)
    srv = recorder([(503, {}, 0), (429, {"Retry-After": "1"}, 0), (200, {}, 0)])
    d = Dispatcher(_config(name="hook", type="webhook", url=srv.url + "/hook",
                           secret_env="HOOK_SECRET"), tmp_path, backoff_s=0.05)
    alert = _alert()
    rep = d.deliver([alert])["hook"]
    assert (rep.delivered, rep.dead_lettered, rep.attempts) == (1, 0, 3)
    reqs = srv.requests
    assert {r["headers"][IDEMPOTENCY_HEADER] for r in reqs} == {alert.id}
    assert reqs[2]["t"] - reqs[1]["t"] >= 0.95  # Retry-After: 1 was honoured
    for r in reqs:  # every attempt is freshly and validly signed
        verify(SECRET, r["body"], r["headers"][SIGNATURE_HEADER])
        assert json.loads(r["body"])["id"] == alert.id
    assert SECRET not in caplog.text and not d.dead_letter_path("hook").exists()


def test_webhook_dead_letter_then_replay(recorder, tmp_path, monkeypatch):
    monkeypatch.setenv("HOOK_SECRET", SECRET)
    srv = recorder([(500, {}, 0)] * 3)
    cfg = _config(name="hook", type="webhook", url=srv.url, secret_env="HOOK_SECRET",
                  attempts=3)
    d = Dispatcher(cfg, tmp_path, backoff_s=0.01)
    rep = d.deliver([_alert()])["hook"]
    assert (rep.delivered, rep.dead_lettered, rep.attempts) == (0, 1, 3)
    dead = d.dead_letter_path("hook").read_text().splitlines()
    assert len(dead) == 1 and json.loads(dead[0])["error"] == "webhook hook: HTTP 500"
    # the receiver is back: replay delivers and empties the dead-letter file
    rep = d.replay("hook")
    assert (rep.delivered, rep.dead_lettered) == (1, 0)
    assert d.dead_letter_path("hook").read_text() == ""
    assert len(srv.requests) == 4
    verify(SECRET, srv.requests[-1]["body"], srv.requests[-1]["headers"][SIGNATURE_HEADER])


def test_webhook_permanent_error_is_not_retried_and_timeouts_are(recorder, tmp_path,
                                                                 monkeypatch):
    monkeypatch.setenv("HOOK_SECRET", SECRET)
    srv = recorder([(400, {}, 0)])
    d = Dispatcher(_config(name="hook", type="webhook", url=srv.url,
                           secret_env="HOOK_SECRET"), tmp_path, backoff_s=0.01)
    rep = d.deliver([_alert()])["hook"]
    assert (rep.attempts, rep.dead_lettered) == (1, 1)
    slow = recorder([(200, {}, 1.5), (200, {}, 0)])
    d = Dispatcher(_config(name="hook", type="webhook", url=slow.url, secret_env="HOOK_SECRET",
                           timeout_s=0.5), tmp_path, backoff_s=0.01)
    rep = d.deliver([_alert()])["hook"]
    assert (rep.delivered, rep.attempts) == (1, 2) and "ReadTimeout" in rep.errors[0]


def test_missing_secret_is_a_clear_permanent_error(tmp_path, monkeypatch):
    monkeypatch.delenv("NO_SUCH_SECRET", raising=False)
    d = Dispatcher(_config(name="hook", type="webhook", url="http://127.0.0.1:9/x",
                           secret_env="NO_SUCH_SECRET"), tmp_path)
    rep = d.deliver([_alert()])["hook"]
    assert rep.attempts == 1 and "NO_SUCH_SECRET is not set" in rep.errors[0]


# --- SMS (Twilio format) and email (SMTP) ------------------------------------------------------

def test_sms_twilio_format(recorder, tmp_path, monkeypatch):
    monkeypatch.setenv("TW_SID", "AC0123")
    monkeypatch.setenv("TW_TOKEN", "tok-secret")
    srv = recorder([(201, {}, 0), (201, {}, 0)])
    d = Dispatcher(_config(name="sms", type="sms", base_url=srv.url, account_sid_env="TW_SID",
                           auth_token_env="TW_TOKEN", sender="+15550001111",
                           to=["+15550002222", "+15550003333"]), tmp_path)
    rep = d.deliver([_alert()])["sms"]
    assert rep.delivered == 1 and len(srv.requests) == 2
    r = srv.requests[0]
    assert r["path"] == "/2010-04-01/Accounts/AC0123/Messages.json"
    assert r["headers"]["Authorization"] == "Basic " + base64.b64encode(
        b"AC0123:tok-secret").decode()
    form = urllib.parse.parse_qs(r["body"].decode())
    assert form["To"] == ["+15550002222"] and form["From"] == ["+15550001111"]
    assert "AAPL 5d" in form["Body"][0] and form["Body"][0].startswith("[stockray warning]")


def test_email_through_local_smtp_server(tmp_path):
    from tests.smtp_server import smtp_server

    with smtp_server() as (handler, port):
        d = Dispatcher(_config(name="mail", type="email", host="127.0.0.1", port=port,
                               sender="alerts@stockray.local", to=["desk@example.com"]),
                       tmp_path)
        alert = _alert()
        rep = d.deliver([alert])["mail"]
    assert rep.delivered == 1 and len(handler.messages) == 1
    env = handler.messages[0]
    assert env.rcpt_tos == ["desk@example.com"]
    text = env.content.decode()
    assert "Subject: [stockray warning] big_move: AAPL 5d" in text
    assert f"Message-ID: <{alert.id}@stockray>" in text


def test_email_server_down_is_retried_then_dead_lettered(tmp_path):
    d = Dispatcher(_config(name="mail", type="email", host="127.0.0.1", port=free_port(),
                           sender="a@b.c", to=["d@e.f"], attempts=2), tmp_path,
                   backoff_s=0.01)
    rep = d.deliver([_alert()])["mail"]
    assert (rep.attempts, rep.dead_lettered) == (2, 1)
    assert d.dead_letter_path("mail").exists()


def test_cli_test_and_replay(recorder, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from ray_apps.cli import app

    monkeypatch.setenv("HOOK_SECRET", SECRET)
    srv = recorder([(503, {}, 0)] * 2)
    cfg = tmp_path / "alerts.yaml"
    cfg.write_text(f"""
rules: [{{name: big, kind: prediction, when: move, threshold: 0.02}}]
sinks:
  - {{name: hook, type: webhook, url: "{srv.url}", secret_env: HOOK_SECRET, attempts: 2}}
""")
    run = CliRunner().invoke
    base = ["--data-dir", str(tmp_path / "d"), "alerts"]
    r = run(app, [*base, "test", "--config", str(cfg)])
    assert r.exit_code == 1 and "dead-lettered 1" in r.output and SECRET not in r.output
    r = run(app, [*base, "replay", "--sink", "hook", "--config", str(cfg)])
    assert r.exit_code == 0 and "delivered 1" in r.output
    assert len(srv.requests) == 3
    r = run(app, [*base, "check", "--config", str(cfg)])
    assert "HOOK_SECRET set" in r.output and SECRET not in r.output
