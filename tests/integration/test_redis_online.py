"""Feast with the Redis online store, on a private ``redis-server`` child process.

Runs only when ``redis-server`` is on PATH (``apt-get install -y redis-server``); skips
cleanly otherwise. The server is started on a free loopback port and stopped by its PID."""

import pandas as pd
import pytest

from features.pipeline import FEATURE_NAMES, build_features_local
from features.redis_server import RedisServer, redis_binary, redis_ping
from features.sources import MARKET_TICKER
from features.store import FeastOnlineReader, apply_repo, materialize, write_offline
from tests.conftest import free_port
from tests.unit.test_pipeline import synthetic_bars

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(redis_binary() is None, reason="redis-server not on PATH")]


def test_materialize_and_read_through_redis(tmp_path):
    bars = pd.concat([synthetic_bars("AAA", n=80, start="2010-01-01"),
                      synthetic_bars(MARKET_TICKER, n=80, seed=2, start="2010-01-01")])
    frame = build_features_local(bars)
    write_offline(frame, tmp_path / "offline", partitioned=False)
    port = free_port()
    with RedisServer(port, workdir=tmp_path / "redis") as server:
        assert redis_ping(port) and server.pid
        store = apply_repo(tmp_path, tmp_path / "offline", online="redis",
                           redis_address=server.address)
        assert "type: redis" in (tmp_path / "feast" / "feature_store.yaml").read_text()
        materialize(store, frame)
        got = FeastOnlineReader(str(tmp_path / "feast")).read(["AAA", "NOPE"])
    assert not redis_ping(port)  # stopped with the context
    assert got["NOPE"] is None
    last = frame.iloc[-1]
    for name in FEATURE_NAMES:
        assert got["AAA"][name] == pytest.approx(last[name], nan_ok=True), name
