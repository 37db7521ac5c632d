"""A local WebSocket server that speaks the Alpaca v2 market-data protocol and replays bars.

No provider is reachable from these machines: this server is how the WebSocket source is
tested (and demoed: ``stockray stream --source ws://127.0.0.1:PORT``). It sends the real
message shapes (``success/connected``, ``success/authenticated``, ``error 402 auth failed``,
``subscription``, arrays of ``{"T":"b",...}``) for the bars it was given, one array per minute,
and closes when the replay is done. Binds 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import asyncio
import json

import pandas as pd


def bar_messages(frame: pd.DataFrame) -> list[str]:
    """One JSON text frame per minute: ``[{"T":"b","S":..,"o":..,..,"t":"...Z"}, ...]``."""
    out = []
    for ts, g in frame.sort_values(["ts", "ticker"]).groupby("ts", sort=True):
        t = pd.Timestamp(ts).tz_convert("UTC").strftime("%Y-%m-%dT%H:%M:%SZ")
        out.append(json.dumps([{"T": "b", "S": r.ticker, "o": r.open, "h": r.high, "l": r.low,
                                "c": r.close, "v": r.volume, "t": t, "n": 1, "vw": r.close}
                               for r in g.itertuples()]))
    return out


async def serve_bars(frame: pd.DataFrame, key: str, secret: str, host: str = "127.0.0.1",
                     port: int = 0, interval_s: float = 0.0, ready: asyncio.Future | None = None,
                     stop: asyncio.Event | None = None) -> None:
    """Serve ``frame``'s bars to every client that authenticates with ``key``/``secret``.

    Args:
        interval_s: pause between minutes.
        ready: set to the bound port once listening.
        stop: serve until this is set (default: until cancelled).
    """
    import websockets

    frames = bar_messages(frame)

    async def handler(ws):
        await ws.send(json.dumps([{"T": "success", "msg": "connected"}]))
        auth = json.loads(await ws.recv())
        if auth.get("action") != "auth" or (auth.get("key"), auth.get("secret")) != (key, secret):
            await ws.send(json.dumps([{"T": "error", "code": 402, "msg": "auth failed"}]))
            await ws.close()
            return
        await ws.send(json.dumps([{"T": "success", "msg": "authenticated"}]))
        sub = json.loads(await ws.recv())
        wanted = set(sub.get("bars", []))
        await ws.send(json.dumps([{"T": "subscription", "trades": [], "quotes": [],
                                   "bars": sorted(wanted)}]))
        for text in frames:
            msgs = [m for m in json.loads(text) if "*" in wanted or m["S"] in wanted]
            if msgs:
                await ws.send(json.dumps(msgs))
            if interval_s:
                await asyncio.sleep(interval_s)
        await ws.close()

    async with websockets.serve(handler, host, port) as server:
        if ready is not None:
            ready.set_result(server.sockets[0].getsockname()[1])
        await (stop.wait() if stop is not None else asyncio.Future())
