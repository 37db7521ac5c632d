"""Typed errors a caller can cause, each mapped to one gRPC status code and HTTP status.

Messages say what was wrong and what to do. Anything else raised while serving is a bug and
maps to ``INTERNAL`` without a stack trace reaching the client.
"""

from __future__ import annotations

import grpc


class ServingError(Exception):
    """Base class: an error the caller can act on. ``grpc_code``/``http_status`` say how."""

    grpc_code: grpc.StatusCode = grpc.StatusCode.INTERNAL
    http_status: int = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __reduce__(self):  # keep the message when Ray pickles the error across replicas
        return (type(self), (self.message,))


class InvalidRequestError(ServingError):
    """Malformed request: empty ticker, horizon not served, negative top_k."""

    grpc_code = grpc.StatusCode.INVALID_ARGUMENT
    http_status = 400


class UnknownTickerError(ServingError):
    """The feature store has no row for the ticker."""

    grpc_code = grpc.StatusCode.NOT_FOUND
    http_status = 404


class FeaturesUnavailableError(ServingError):
    """The ticker is known but a served model's features are missing or NaN."""

    grpc_code = grpc.StatusCode.FAILED_PRECONDITION
    http_status = 409


class StaleFeaturesError(FeaturesUnavailableError):
    """Features older than the configured limit while the server refuses stale features."""


class FeatureStoreUnavailableError(ServingError):
    """The online feature store failed or missed its read deadline, with no last good row."""

    grpc_code = grpc.StatusCode.UNAVAILABLE
    http_status = 503


class OverloadedError(ServingError):
    """Serve's backpressure (``max_queued_requests``) rejected the request."""

    grpc_code = grpc.StatusCode.RESOURCE_EXHAUSTED
    http_status = 503


class UnauthenticatedError(ServingError):
    """No token, or a token that matches no key."""

    grpc_code = grpc.StatusCode.UNAUTHENTICATED
    http_status = 401


class PermissionDeniedError(ServingError):
    """The key is valid but lacks the scope the RPC needs."""

    grpc_code = grpc.StatusCode.PERMISSION_DENIED
    http_status = 403


class RateLimitedError(ServingError):
    """The key is over its rate limit; ``retry_after_s`` says when a token is free again."""

    grpc_code = grpc.StatusCode.RESOURCE_EXHAUSTED
    http_status = 429

    def __init__(self, message: str, retry_after_s: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s

    def __reduce__(self):
        return (type(self), (self.message, self.retry_after_s))


class RequestTooLargeError(ServingError):
    """The request body is over the configured size limit (checked before decoding)."""

    grpc_code = grpc.StatusCode.RESOURCE_EXHAUSTED
    http_status = 413


class ModelUnavailableError(ServingError):
    """The server runs without the model this call needs (e.g. no sentiment bundle)."""

    grpc_code = grpc.StatusCode.UNAVAILABLE
    http_status = 503


OVERLOAD_HINT = (
    "server overloaded (request queue full): retry with exponential backoff and jitter "
    "(e.g. 50 ms doubling to 2 s), or add replicas / raise max_queued_requests"
)


def _is_backpressure(exc: BaseException) -> bool:
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if type(cur).__name__ == "BackPressureError":  # ray.serve.exceptions, not imported here
            return True
        cause = getattr(cur, "cause", None)
        cur = cause if isinstance(cause, BaseException) else cur.__cause__
    return False


def unwrap_serving_error(exc: BaseException) -> ServingError | None:
    """Return the :class:`ServingError` behind ``exc`` (Ray wraps remote errors), else None."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, ServingError) and type(cur).__module__ == __name__:
            return cur
        cause = getattr(cur, "cause", None)  # ray.exceptions.RayTaskError
        if isinstance(cause, ServingError):
            return cause
        cur = cause if isinstance(cause, BaseException) else cur.__cause__
    return None


def status_of(exc: BaseException) -> tuple[grpc.StatusCode, str, int]:
    """``(grpc code, message, http status)`` for an exception raised while serving.

    Non-ServingErrors become ``INTERNAL`` with a generic message: never a stack trace.
    """
    se = unwrap_serving_error(exc)
    if se is not None:
        return se.grpc_code, se.message, se.http_status
    if _is_backpressure(exc):
        return OverloadedError.grpc_code, OVERLOAD_HINT, OverloadedError.http_status
    return (
        grpc.StatusCode.INTERNAL,
        f"internal error ({type(exc).__name__}); see the server log",
        500,
    )
