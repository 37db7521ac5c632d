"""The HTTP behaviour every provider shares, written once.

One :class:`ProviderClient` per provider and process:

- **rate limit**: a moving-window limiter (``limits``) per provider; a call waits for a slot
  rather than being refused, so a long ticker list simply takes longer;
- **retries** (``tenacity``): 429, 5xx, timeouts, connection errors and provider "throttle"
  bodies (Alpha Vantage answers HTTP 200 with a ``Note``) are retried with jittered exponential
  backoff; a ``Retry-After`` header sets the wait instead (capped at ``backoff_max_s``);
- **circuit breaker** (``pybreaker``): after ``breaker_fail_max`` calls that failed even after
  their retries, the provider is not called at all for ``breaker_reset_s``; then one trial call
  decides whether it closes again. Permanent errors (404, a bad key, a malformed body) are
  the caller's problem, not the provider's health, and do not count;
- **secrets**: keys travel as query parameters or headers but every URL that reaches a log,
  an exception or a report has them replaced by ``***``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Self

import httpx
import pybreaker
from limits import parse as parse_rate
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)

log = logging.getLogger(__name__)

_RETRY_STATUS = {408, 425, 429, 500, 502, 503, 504}
_SECRET_PARAMS = ("apikey", "api_key", "token", "key")


class ProviderError(Exception):
    """A provider call failed; the message never contains a key."""


class TransientError(ProviderError):
    """Worth retrying: 429, 5xx, timeout, connection error, a throttle body."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class PermanentError(ProviderError):
    """Retrying will not help: 4xx other than 408/425/429, or an error body."""


class MalformedResponse(PermanentError):
    """The body is not in the provider's format; the raw body is kept for the quarantine."""

    def __init__(self, message: str, body: bytes = b""):
        super().__init__(message)
        self.body = body


class CircuitOpen(ProviderError):
    """The provider's circuit is open: not called, reported as unavailable."""


def redact(url: str | httpx.URL) -> str:
    """``url`` with secret query parameters replaced by ``***``."""
    u = httpx.URL(str(url))
    params = [(k, "***" if k.lower() in _SECRET_PARAMS else v) for k, v in u.params.multi_items()]
    return str(u.copy_with(params=params))


def _retry_after(resp: httpx.Response) -> float | None:
    value = resp.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:  # an HTTP date
        from email.utils import parsedate_to_datetime
        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


class _RedactUrls(logging.Filter):
    """httpx logs every request URL at INFO, query string included: redact keys there too."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, httpx.URL) else a
                                for a in record.args)
        return True


def _install_log_filter() -> None:
    lg = logging.getLogger("httpx")
    if not any(isinstance(f, _RedactUrls) for f in lg.filters):
        lg.addFilter(_RedactUrls())


class _WaitRetryAfter:
    """Wait what the server asked for (Retry-After), else jittered exponential backoff."""

    def __init__(self, base: float, cap: float):
        self.cap = cap
        self.backoff = wait_random_exponential(multiplier=base, max=cap)

    def __call__(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, TransientError) and exc.retry_after is not None:
            return min(exc.retry_after, self.cap)
        return self.backoff(state)


@dataclass
class ClientLimits:
    """How one provider's client behaves (see ``ProviderSettings`` for the defaults)."""

    rate: str = "1/second"
    timeout_s: float = 15.0
    retries: int = 4
    backoff_s: float = 2.0
    backoff_max_s: float = 60.0
    breaker_fail_max: int = 3
    breaker_reset_s: float = 60.0


@dataclass
class ProviderClient:
    """GET JSON or text from one provider with rate limit, retries and a circuit breaker.

    Args:
        name: provider name (rate-limit key, breaker name, messages).
        limits: client behaviour.
        check_body: called with the decoded JSON of a 200 answer; raises TransientError for
            a throttle body or PermanentError for an error body (providers that answer errors
            with HTTP 200).
    """

    name: str
    limits: ClientLimits = field(default_factory=ClientLimits)
    check_body: Callable[[object], None] | None = None
    headers: dict[str, str] = field(default_factory=dict, repr=False)  # may hold a token
    calls: int = 0  # HTTP requests actually sent (attempts, not logical calls)

    def __post_init__(self) -> None:
        _install_log_filter()
        self._http = httpx.Client(timeout=self.limits.timeout_s, headers={
            "User-Agent": "stockray/0.1", **self.headers})
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        self._rate = parse_rate(self.limits.rate)
        self.breaker = pybreaker.CircuitBreaker(
            fail_max=self.limits.breaker_fail_max, reset_timeout=self.limits.breaker_reset_s,
            exclude=[PermanentError], name=self.name)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- public --
    def get_json(self, url: str, params: dict | None = None) -> object:
        """GET ``url`` and decode JSON (after ``check_body``); see the class for errors."""
        return self._call(url, params, want_json=True)

    def get_text(self, url: str, params: dict | None = None) -> tuple[str, str]:
        """GET ``url``; returns (body text, content type)."""
        return self._call(url, params, want_json=False)

    # -- internals --
    def _call(self, url: str, params: dict | None, want_json: bool):
        # pybreaker refuses calls while open and lets one trial through once the reset
        # timeout has passed (half-open); its own error becomes our CircuitOpen.
        try:
            return self.breaker.call(self._with_retries, url, params, want_json)
        except pybreaker.CircuitBreakerError as e:
            raise CircuitOpen(f"{self.name}: circuit open after repeated failures ({e}); "
                              f"not called, next trial after "
                              f"{self.limits.breaker_reset_s:g}s") from None

    def _with_retries(self, url: str, params: dict | None, want_json: bool):
        retrying = Retrying(
            retry=retry_if_exception_type(TransientError),
            stop=stop_after_attempt(self.limits.retries + 1),
            wait=_WaitRetryAfter(self.limits.backoff_s, self.limits.backoff_max_s),
            reraise=True,
            before_sleep=lambda s: log.warning(
                "%s: attempt %d failed (%s); retrying", self.name, s.attempt_number,
                s.outcome.exception() if s.outcome else "?"),
        )
        return retrying(self._once, url, params, want_json)

    def _wait_for_slot(self) -> None:
        while not self._limiter.hit(self._rate, self.name):
            reset = self._limiter.get_window_stats(self._rate, self.name).reset_time
            time.sleep(max(0.01, min(reset - time.time(), self.limits.backoff_max_s)))

    def _once(self, url: str, params: dict | None, want_json: bool):
        self._wait_for_slot()
        self.calls += 1
        try:
            resp = self._http.get(url, params=params)
        except httpx.TimeoutException as e:
            raise TransientError(f"{self.name}: timeout after {self.limits.timeout_s}s "
                                 f"({type(e).__name__}) on {redact(e.request.url)}") from None
        except httpx.TransportError as e:
            raise TransientError(f"{self.name}: {type(e).__name__} on "
                                 f"{redact(e.request.url)}") from None
        where = redact(resp.request.url)
        if resp.status_code in _RETRY_STATUS:
            raise TransientError(f"{self.name}: HTTP {resp.status_code} on {where}",
                                 retry_after=_retry_after(resp))
        if resp.status_code >= 500:
            raise TransientError(f"{self.name}: HTTP {resp.status_code} on {where}")
        if resp.status_code >= 400:
            raise PermanentError(f"{self.name}: HTTP {resp.status_code} on {where}: "
                                 f"{resp.text[:200]}")
        if not want_json:
            return resp.text, resp.headers.get("content-type", "")
        try:
            body = resp.json()
        except ValueError:
            raise MalformedResponse(f"{self.name}: body of {where} is not JSON: "
                                    f"{resp.text[:80]!r}", resp.content) from None
        if self.check_body is not None:
            try:
                self.check_body(body)
            except MalformedResponse as e:
                e.body = e.body or resp.content
                raise
        return body
