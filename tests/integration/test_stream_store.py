"""The stream against a real Feast repo (no Ray): the intraday view is a PushSource view (a
``store.push`` and the stream's direct write give the same online row), the stream refuses a
repo without it, and an event recomputes the served daily row at once."""

from __future__ import annotations

import pandas as pd
import pytest
from feast.data_source import PushMode

from features.events import EventRules
from features.intraday import INTRADAY_PUSH, INTRADAY_VIEW, push_intraday
from features.live import StreamConfig, StreamRunner
from features.microbatch import INTRADAY_TS, intraday_columns
from features.store import FeastOnlineReader, open_store
from tests.integration.test_stream_serve import _daily_lake, _minute_bars
from tests.unit.test_minute_stream import planted

pytestmark = pytest.mark.integration


def test_stream_writes_intraday_and_refreshes_daily_on_events(tmp_path):
    with pytest.raises(RuntimeError, match="stockray features"):
        open_store(tmp_path / "empty")  # writes a config, registers nothing
        StreamRunner(tmp_path / "empty")
    data = tmp_path / "d"
    _daily_lake(data)
    bars, spots = planted(_minute_bars())
    sent = []
    runner = StreamRunner(data, StreamConfig(daily_every_min=0, rules=EventRules(), macro=None),
                          on_events=sent.extend)
    reader = FeastOnlineReader(str(data / "feast"))
    before = reader.read(["AAPL"])["AAPL"]["feature_ts"]
    for _, g in bars[bars["ts"] <= spots["gap"]].groupby("ts", sort=True):
        rep = runner.process(g)
    assert rep.events >= 1 and rep.daily_refreshed == 1  # the gap bar: targeted recompute
    # the planted 3 % gap is also a > 6 sigma close-to-close move
    assert {e["rule"] for e in sent if pd.Timestamp(e["ts"]) == spots["gap"]} >= {"gap"}
    after = reader.read(["AAPL"])["AAPL"]
    assert after["feature_ts"] == (spots["gap"] + pd.Timedelta(minutes=1)).timestamp() > before

    refs = [f"{INTRADAY_VIEW}:{c}" for c in [*intraday_columns(), INTRADAY_TS]]
    store = runner.store
    mine = store.get_online_features(features=refs, entity_rows=[{"ticker": "AAPL"}]).to_dict()
    rows = runner.engine.intraday_rows(["AAPL"])
    assert mine[INTRADAY_TS] == [rows[INTRADAY_TS].iloc[0]]
    store.push(INTRADAY_PUSH, rows.assign(ticker="ZZZ"), to=PushMode.ONLINE)
    pushed = store.get_online_features(features=refs, entity_rows=[{"ticker": "ZZZ"}]).to_dict()
    assert {k: v for k, v in pushed.items() if k != "ticker"} == \
        {k: v for k, v in mine.items() if k != "ticker"}
    assert push_intraday(store, rows.iloc[:0]) == 0


def test_websocket_stream_into_the_online_store(tmp_path):
    import asyncio

    from features.bar_sources import WebSocketBarSource
    from features.replay_server import serve_bars

    data = tmp_path / "d"
    _daily_lake(data)
    bars = _minute_bars().iloc[:45]
    runner = StreamRunner(data, StreamConfig(daily_every_min=0, macro=None))

    async def main():
        stop = asyncio.Event()
        ready = asyncio.get_running_loop().create_future()
        server = asyncio.create_task(serve_bars(bars, "k", "s", ready=ready, stop=stop))
        src = WebSocketBarSource(f"ws://127.0.0.1:{await ready}", ["AAPL"], key="k", secret="s")
        try:
            return await runner.run(src)
        finally:
            stop.set()
            await server

    summary = asyncio.run(main())
    assert summary["bars"] == 45 and summary["this_run"]["duplicates"] == 0
    end = (bars["ts"].max() + pd.Timedelta(minutes=1)).timestamp()
    row = FeastOnlineReader(str(data / "feast")).read(["AAPL"])["AAPL"]
    assert row["feature_ts"] == end  # finish() refreshed the served daily row
    got = runner.store.get_online_features(features=[f"{INTRADAY_VIEW}:{INTRADAY_TS}"],
                                           entity_rows=[{"ticker": "AAPL"}]).to_dict()
    assert got[INTRADAY_TS] == [end]
