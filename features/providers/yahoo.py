"""Yahoo-style chart JSON (``/v8/finance/chart/{ticker}``) -> raw OHLCV rows.

Wire format (one ticker per call)::

    {"chart": {"result": [{"meta": {"symbol": "AAPL",
                                    "exchangeTimezoneName": "America/New_York", ...},
                           "timestamp": [1598880600, ...],          # session open, epoch s
                           "events": {"splits": {"<ts>": {"date": ts, "numerator": 4,
                                                          "denominator": 1, "splitRatio": "4:1"}},
                                      "dividends": {"<ts>": {"date": ts, "amount": 0.205}}},
                           "indicators": {"quote": [{"open": [...], "high": [...], "low": [...],
                                                     "close": [...], "volume": [...]}],
                                          "adjclose": [{"adjclose": [...]}]}}],
               "error": null}}

Errors come as ``{"chart": {"result": null, "error": {"code": ..., "description": ...}}}``.

Adjustment: Yahoo's ``open/high/low/close`` are already **split**-adjusted (not dividend-
adjusted) and ``adjclose`` is split- and dividend-adjusted. The lake stores prices as traded
(``features.schema``), so bars before each split are multiplied back by the split ratio
(volume divided by it); ``adj_close`` keeps Yahoo's ``adjclose``, so validation derives
``adj_factor = adjclose / close_as_traded``. Nulls in the arrays (Yahoo leaves holes) reach
validation as empty cells and are quarantined there.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.providers.http import MalformedResponse, PermanentError, ProviderClient
from features.providers.source import ProviderSource


def parse_chart(body: object, ticker: str) -> tuple[pd.DataFrame, set[str]]:
    """Raw rows of one chart answer, and the sessions (YYYY-MM-DD) of its split and dividend
    events.

    Raises:
        PermanentError: the answer is Yahoo's error object.
        MalformedResponse: the answer is not a chart document.
    """
    try:
        chart = body["chart"]  # type: ignore[index]
        if chart.get("error"):
            err = chart["error"]
            raise PermanentError(f"yahoo: {ticker}: {err.get('code')}: {err.get('description')}")
        res = chart["result"][0]
        meta = res.get("meta", {})
        ts = res.get("timestamp") or []
        if not ts:
            # No session in the window (a holiday, nothing new yet): Yahoo then omits
            # "timestamp" and sends empty quote objects.
            return pd.DataFrame(columns=["ticker", "date", "open", "high", "low", "close",
                                         "volume", "adj_close"]), set()
        quote = res["indicators"]["quote"][0]
        adj = (res["indicators"].get("adjclose") or [{}])[0].get("adjclose")
        events = res.get("events") or {}
        cols = {k: quote[k] for k in ("open", "high", "low", "close", "volume")}
    except PermanentError:
        raise
    except (KeyError, IndexError, TypeError, AttributeError) as e:
        raise MalformedResponse(f"yahoo: {ticker}: not a chart document ({type(e).__name__}: "
                                f"{e})") from None
    n = len(ts)
    if any(len(v) != n for v in cols.values()) or (adj is not None and len(adj) != n):
        raise MalformedResponse(f"yahoo: {ticker}: arrays of unequal length (timestamp {n})")
    tz = meta.get("exchangeTimezoneName") or "America/New_York"
    # A daily bar's timestamp is the session open; its exchange-local date names the session.
    dates = pd.to_datetime(pd.Series(ts, dtype="int64"), unit="s", utc=True).dt.tz_convert(tz)
    day = dates.dt.strftime("%Y-%m-%d")
    frame = pd.DataFrame({"ticker": meta.get("symbol") or ticker, "date": day})
    for k, v in cols.items():
        frame[k] = pd.to_numeric(pd.Series(v, dtype="object"), errors="coerce")
    if adj is not None:
        frame["adj_close"] = pd.to_numeric(pd.Series(adj, dtype="object"), errors="coerce")

    def session(epoch) -> str:
        return pd.Timestamp(int(epoch), unit="s", tz="UTC").tz_convert(tz).strftime("%Y-%m-%d")

    splits = (events.get("splits") or {}).values()
    # Cumulative ratio of the splits after each bar: as traded = split-adjusted * ratio.
    ratio = np.ones(n)
    for s in splits:
        when = session(s["date"])
        r = float(s["numerator"]) / float(s["denominator"])
        ratio[(day < when).to_numpy()] *= r
    for k in ("open", "high", "low", "close"):
        frame[k] = frame[k] * ratio
    frame["volume"] = (frame["volume"] / ratio).round()
    event_days = {session(e["date"]) for kind in ("splits", "dividends")
                  for e in (events.get(kind) or {}).values()}
    # Empty cells (Yahoo's nulls) stay empty text so validation names them.
    return frame.astype(object).where(frame.notna(), ""), event_days


@dataclass
class YahooSource(ProviderSource):
    """Daily bars of one ticker from a Yahoo-style chart endpoint."""

    provider: str = "yahoo"

    def request(self, client: ProviderClient, since: pd.Timestamp | None) -> object:
        start = int(since.timestamp()) if since is not None else 0
        end = int(pd.Timestamp.now(tz="UTC").timestamp())
        return client.get_json(f"{self.base_url.rstrip('/')}/v8/finance/chart/{self.ticker}",
                               params={"period1": start, "period2": end, "interval": "1d",
                                       "events": "div|split", "includeAdjustedClose": "true"})

    def parse(self, body: object) -> tuple[pd.DataFrame, set[str]]:
        return parse_chart(body, self.ticker)
