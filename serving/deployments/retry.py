"""Bounded retry of the ingress's calls to the stage deployments (split mode).

A stage replica that dies (SIGKILL, OOM, node loss) fails the calls in flight on it with
``ActorDiedError`` / ``ActorUnavailableError`` (both ``RayActorError``), ``WorkerCrashedError``
or Serve's ``ReplicaUnavailableError``; Serve removes the replica from the handle's routing and
sends new calls elsewhere, but it does not resend those. Every stage call the ingress makes is an
idempotent read (feature lookup, scoring, explanation, model table, store health), so resending
it once is safe: at most ``attempts`` (2) tries in all, each retry logged and counted
(``stockray_stage_retries``). Any other exception, including a stage's own error, is raised at
once. A dead *ingress* replica still fails its own in-flight requests: nothing in front of it
retries (the client sees UNAVAILABLE/INTERNAL and may resend).
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

from ray.exceptions import RayActorError, WorkerCrashedError
from ray.serve.exceptions import ReplicaUnavailableError

from serving.metrics import ServingMetrics

log = logging.getLogger("ray.serve")
RETRYABLE: tuple[type[BaseException], ...] = (RayActorError, WorkerCrashedError,
                                              ReplicaUnavailableError)
MAX_ATTEMPTS = 2


class StageCaller:
    """Calls ``handle.<method>.remote(*args)`` with up to ``attempts`` tries on a dead replica.

    ``attempts=1`` is a plain handle call with no try/resend (what ``bench.stage_retry``
    compares against). ``retries`` counts resends by ``stage.method`` (also read by the tests)."""

    def __init__(self, attempts: int = MAX_ATTEMPTS, metrics: ServingMetrics | None = None):
        self.metrics = metrics
        self.retries: Counter[str] = Counter()
        self.set_attempts(attempts)

    def set_attempts(self, attempts: int) -> None:
        if not 1 <= attempts <= MAX_ATTEMPTS:
            raise ValueError(f"stage call attempts must be 1..{MAX_ATTEMPTS}, not {attempts}")
        self.attempts = attempts

    async def __call__(self, handle: Any, method: str, *args: Any) -> Any:
        if self.attempts == 1:
            return await getattr(handle, method).remote(*args)
        try:
            return await getattr(handle, method).remote(*args)
        except RETRYABLE as e:
            # Only the death of the replica that held the call; the resend is routed by Serve
            # to a live replica (or waits for the restarted one).
            key = f"{getattr(handle, 'deployment_name', '?')}.{method}"
            self.retries[key] += 1
            log.warning("stage call %s failed on a dead replica (%s); retrying once", key,
                        type(e).__name__)
            if self.metrics is not None:
                self.metrics.stage_retry(key, type(e).__name__)
            return await getattr(handle, method).remote(*args)
