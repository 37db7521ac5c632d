"""Webhook signatures: HMAC-SHA256 over ``"<timestamp>." + body``, Stripe-style header.

A receiver recomputes the HMAC with the shared secret, compares in constant time and refuses
a timestamp outside its tolerance (a replayed old request fails even with a valid signature).
"""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "X-Stockray-Signature"
IDEMPOTENCY_HEADER = "Idempotency-Key"
#: A signed request older (or newer) than this is refused by `verify`.
DEFAULT_TOLERANCE_S = 300


class SignatureError(ValueError):
    """The signature header is missing, malformed, stale or does not match."""


def _mac(secret: str, timestamp: int, body: bytes) -> str:
    msg = str(int(timestamp)).encode() + b"." + body
    return hmac.new(secret.encode(), msg, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The header value ``t=<unix seconds>,v1=<hex hmac>`` for ``body``."""
    if not secret:
        raise ValueError("webhook signing secret is empty")
    ts = int(time.time()) if timestamp is None else int(timestamp)
    return f"t={ts},v1={_mac(secret, ts, body)}"


def verify(secret: str, body: bytes, header: str | None, *,
           tolerance_s: int = DEFAULT_TOLERANCE_S, now: float | None = None) -> int:
    """Check ``header`` against ``body``; returns the signed timestamp.

    Raises:
        SignatureError: missing/malformed header, stale timestamp or wrong HMAC.
    """
    if not header:
        raise SignatureError(f"missing {SIGNATURE_HEADER} header")
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        ts = int(parts["t"])
        got = parts["v1"]
    except (KeyError, ValueError) as e:
        raise SignatureError(f"malformed {SIGNATURE_HEADER}: expected t=<ts>,v1=<hex>") from e
    now = time.time() if now is None else now
    if abs(now - ts) > tolerance_s:
        raise SignatureError(f"signature timestamp {ts} is outside the {tolerance_s}s tolerance")
    if not hmac.compare_digest(_mac(secret, ts, body), got):
        raise SignatureError("signature does not match the body")
    return ts
