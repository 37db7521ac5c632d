"""The shared provider client against a local replay server: retries (429 with Retry-After,
5xx, timeouts, throttle bodies), the circuit breaker opening and closing, the rate limit, and
keys kept out of every message."""

from __future__ import annotations

import logging
import time

import pybreaker
import pytest

from features.providers import alphavantage
from features.providers.http import (
    CircuitOpen,
    ClientLimits,
    MalformedResponse,
    PermanentError,
    ProviderClient,
    TransientError,
    redact,
)
from tests.provider_replay import ReplayServer, Reply

FAST = {"backoff_s": 0.01, "backoff_max_s": 2.0, "rate": "1000/second"}


def _client(**kw) -> ProviderClient:
    return ProviderClient("test", ClientLimits(**{**FAST, **kw}))


def test_retries_429_with_retry_after_then_500_then_timeout_then_succeeds():
    with ReplayServer() as srv, _client(retries=4, timeout_s=0.5) as c:
        srv.route("/x", Reply(429, {"e": 1}, headers={"Retry-After": "1"}), Reply(500, b"boom"),
                  Reply(200, {"late": True}, delay=1.5), Reply(200, {"ok": 1}))
        assert c.get_json(f"{srv.url}/x") == {"ok": 1}
        seen = srv.requests("/x")
        assert len(seen) == 4 and c.calls == 4
        # Retry-After: 1 was honoured (jittered backoff alone waits ~0.01 s here).
        assert seen[1].t - seen[0].t >= 0.95
        assert seen[2].t - seen[1].t < 0.9


def test_retries_exhausted_raise_transient_and_404_is_not_retried():
    with ReplayServer() as srv, _client(retries=2) as c:
        srv.route("/down", Reply(503, b"maintenance"))
        with pytest.raises(TransientError, match="HTTP 503"):
            c.get_json(f"{srv.url}/down")
        assert len(srv.requests("/down")) == 3
        with pytest.raises(PermanentError, match="HTTP 404"):
            c.get_json(f"{srv.url}/nowhere")
        assert len(srv.requests("/nowhere")) == 1


def test_non_json_body_is_malformed_and_keeps_the_body():
    with ReplayServer() as srv, _client() as c:
        srv.route("/html", Reply(200, "<html>Will be right back</html>", content_type="text/html"))
        with pytest.raises(MalformedResponse) as e:
            c.get_json(f"{srv.url}/html")
        assert e.value.body.startswith(b"<html>")
        assert len(srv.requests("/html")) == 1  # a malformed body is not retried


def test_alpha_vantage_throttle_body_is_retried_and_error_body_is_not():
    with ReplayServer() as srv:
        c = ProviderClient("alphavantage", ClientLimits(**FAST), check_body=alphavantage.check_body)
        srv.route("/query", Reply(200, {"Note": "Thank you for using Alpha Vantage! Our standard "
                                                "API call frequency is 5 calls per minute."}),
                  Reply(200, {"Information": "rate limit"}),
                  Reply(200, {"Time Series (Daily)": {}}))
        assert "Time Series (Daily)" in c.get_json(f"{srv.url}/query")
        assert len(srv.requests("/query")) == 3
        srv.route("/query", Reply(200, {"Error Message": "Invalid API call."}))
        with pytest.raises(PermanentError, match="Invalid API call"):
            c.get_json(f"{srv.url}/query")
        c.close()


def test_circuit_opens_after_failures_skips_calls_then_closes_after_a_good_trial():
    with ReplayServer() as srv, _client(retries=1, breaker_fail_max=2,
                                        breaker_reset_s=0.5) as c:
        srv.route("/p", Reply(503, b"down"))
        with pytest.raises(TransientError):
            c.get_json(f"{srv.url}/p")
        with pytest.raises(CircuitOpen):  # the second failed call trips the breaker
            c.get_json(f"{srv.url}/p")
        assert c.breaker.current_state == pybreaker.STATE_OPEN
        sent = len(srv.requests("/p"))
        assert sent == 4  # 2 calls x (1 try + 1 retry)
        with pytest.raises(CircuitOpen):
            c.get_json(f"{srv.url}/p")
        assert len(srv.requests("/p")) == sent  # open: the provider is not called at all
        srv.route("/p", Reply(200, {"ok": True}))
        time.sleep(0.6)
        assert c.get_json(f"{srv.url}/p") == {"ok": True}  # half-open trial succeeds
        assert c.breaker.current_state == pybreaker.STATE_CLOSED


def test_permanent_errors_do_not_open_the_circuit():
    with ReplayServer() as srv, _client(breaker_fail_max=2) as c:
        for _ in range(4):
            with pytest.raises(PermanentError):
                c.get_json(f"{srv.url}/missing")
        assert c.breaker.current_state == pybreaker.STATE_CLOSED


def test_rate_limit_spaces_requests():
    with ReplayServer() as srv, _client(rate="3/second") as c:
        srv.route("/r", Reply(200, {}))
        for _ in range(7):
            c.get_json(f"{srv.url}/r")
        t = [s.t for s in srv.requests("/r")]
        # Never more than 3 requests inside any one-second window (small slack for clocks).
        assert all(t[i + 3] - t[i] >= 0.95 for i in range(len(t) - 3))


def test_keys_never_reach_messages_or_logs(caplog):
    assert "s3cr3t" not in redact("http://h/q?apikey=s3cr3t&symbol=AAPL")
    with ReplayServer() as srv, _client(retries=1) as c, caplog.at_level(logging.DEBUG):
        srv.route("/query", Reply(500, b"x"))
        with pytest.raises(TransientError) as e:
            c.get_json(f"{srv.url}/query", params={"apikey": "s3cr3t", "symbol": "AAPL"})
        assert "s3cr3t" not in str(e.value) and "apikey=%2A%2A%2A" in str(e.value)
        assert "s3cr3t" not in caplog.text
        assert srv.requests("/query")[0].query["apikey"] == "s3cr3t"  # but it was sent


def test_sources_and_clients_do_not_show_keys_in_their_repr():
    from features.providers.alphavantage import AlphaVantageSource

    c = ProviderClient("http", headers={"Authorization": "Bearer tok3n"})
    src = AlphaVantageSource(ticker="AAPL", client=c, base_url="http://h", api_key="s3cr3t")
    assert "s3cr3t" not in repr(src) and "tok3n" not in repr(src) and "tok3n" not in repr(c)
    c.close()
