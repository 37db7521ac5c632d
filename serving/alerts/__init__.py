"""Alerts: YAML rules over predictions, data quality and model health, delivered to sinks.

- `serving.alerts.rules`: the rule file (`AlertConfig`), `Alert` records and the evaluators
  (`prediction_alerts`, `quality_alerts`, `health_alerts`).
- `serving.alerts.signing`: HMAC-SHA256 webhook signatures (`sign`, `verify`).
- `serving.alerts.sinks`: webhook, SMTP email and Twilio-format SMS sinks, retries with
  jittered backoff, a dead-letter file per sink and `replay`.

No training imports: alerts read what serving and monitoring produce (responses, reports).
"""
