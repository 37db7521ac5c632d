"""StageCaller's contract (serving/deployments/retry.py), on Ray's real exception types.

The handle below stands in for Serve's routing only (which replica a call lands on); the real
kill of a replica under a real Serve app is tests/integration/test_stage_retry.py."""

import asyncio

import pytest
from ray.exceptions import ActorDiedError, ActorUnavailableError, WorkerCrashedError
from ray.serve.exceptions import ReplicaUnavailableError

from serving.deployments.retry import StageCaller
from serving.errors import ServingError


class _Handle:
    """``handle.<method>.remote(*args)`` whose first ``fail`` calls raise ``exc``."""

    deployment_name = "Predictor"

    def __init__(self, exc: BaseException | None, fail: int = 1) -> None:
        self.exc, self.fail, self.calls = exc, fail, 0

    def __getattr__(self, method: str):
        outer = self

        class _M:
            @staticmethod
            async def remote(*args):
                outer.calls += 1
                if outer.exc is not None and outer.calls <= outer.fail:
                    raise outer.exc
                return (method, args)

        return _M()


DEAD = [ActorDiedError(), ActorUnavailableError("gone", b"0" * 16), WorkerCrashedError(),
        ReplicaUnavailableError("r1")]


@pytest.mark.parametrize("exc", DEAD, ids=lambda e: type(e).__name__)
def test_a_call_lost_with_its_replica_is_resent_once_and_counted(exc):
    caller, h = StageCaller(), _Handle(exc)
    assert asyncio.run(caller(h, "score", [1], 5)) == ("score", ([1], 5))
    assert h.calls == 2 and caller.retries == {"Predictor.score": 1}


def test_never_more_than_two_attempts():
    caller, h = StageCaller(), _Handle(ActorDiedError(), fail=5)
    with pytest.raises(ActorDiedError):
        asyncio.run(caller(h, "score"))
    assert h.calls == 2


@pytest.mark.parametrize("exc", [ServingError("bad ticker"), RuntimeError("stage bug"),
                                 TimeoutError()], ids=lambda e: type(e).__name__)
def test_other_errors_are_not_resent(exc):
    caller, h = StageCaller(), _Handle(exc)
    with pytest.raises(type(exc)):
        asyncio.run(caller(h, "lookup_many", ["AAPL"]))
    assert h.calls == 1 and not caller.retries


def test_one_attempt_means_no_resend():
    caller, h = StageCaller(attempts=1), _Handle(ActorDiedError())
    with pytest.raises(ActorDiedError):
        asyncio.run(caller(h, "score"))
    assert h.calls == 1
    with pytest.raises(ValueError):
        caller.set_attempts(3)
