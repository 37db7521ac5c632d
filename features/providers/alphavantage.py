"""Alpha Vantage ``TIME_SERIES_DAILY_ADJUSTED`` and ``TIME_SERIES_INTRADAY`` -> raw rows.

Wire format (``GET /query?function=...&symbol=AAPL&apikey=...``)::

    {"Meta Data": {"1. Information": "Daily Time Series with Splits and Dividend Events",
                   "2. Symbol": "AAPL", ..., "5. Time Zone": "US/Eastern"},
     "Time Series (Daily)": {"2020-08-31": {"1. open": "127.5800", "2. high": "131.0000",
         "3. low": "126.0000", "4. close": "129.0400", "5. adjusted close": "126.8100",
         "6. volume": "225702688", "7. dividend amount": "0.0000",
         "8. split coefficient": "4.0"}, ...}}

Intraday (``interval=5min``) answers ``"Time Series (5min)"`` with ``1. open`` ..
``5. volume`` keyed by exchange-local timestamps (``"6. Time Zone"`` in the meta data).

Alpha Vantage answers limits and errors with **HTTP 200**: ``{"Note": ...}`` or
``{"Information": ...}`` when throttled (retried with backoff like a 429) and
``{"Error Message": ...}`` for a bad symbol or call (permanent).

Adjustment: ``4. close`` is as traded and ``5. adjusted close`` is split- and dividend-
adjusted, so the raw ``adj_close`` is the provider's own field. Intraday is requested with
``adjusted=false`` (as traded; ``adj_factor`` 1 — intraday bars are not adjusted here).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from features.providers.http import (
    MalformedResponse,
    PermanentError,
    ProviderClient,
    TransientError,
)
from features.providers.source import ProviderSource

# Compact output holds the latest 100 data points; older gaps need the full history.
_COMPACT_DAYS = 100


def check_body(body: object) -> None:
    """Raise for Alpha Vantage's HTTP-200 throttle and error bodies."""
    if not isinstance(body, dict):
        raise MalformedResponse("alphavantage: body is not a JSON object")
    for key in ("Note", "Information"):
        if key in body and not any(k.startswith("Time Series") for k in body):
            raise TransientError(f"alphavantage: throttled: {str(body[key])[:120]}")
    if "Error Message" in body:
        raise PermanentError(f"alphavantage: {str(body['Error Message'])[:200]}")


def parse_series(body: object, ticker: str) -> tuple[pd.DataFrame, set[str]]:
    """Raw rows of a daily-adjusted or intraday answer, and the sessions (YYYY-MM-DD) with a
    dividend or split."""
    if not isinstance(body, dict):
        raise MalformedResponse(f"alphavantage: {ticker}: body is not a JSON object")
    keys = [k for k in body if k.startswith("Time Series")]
    if len(keys) != 1 or not isinstance(body[keys[0]], dict):
        raise MalformedResponse(f"alphavantage: {ticker}: no 'Time Series (...)' object; "
                                f"keys {sorted(body)[:5]}")
    series = body[keys[0]]
    if not series:
        return pd.DataFrame(columns=["ticker", "date", "open", "high", "low", "close",
                                     "volume"]), set()
    try:
        frame = pd.DataFrame.from_dict(series, orient="index", dtype=object)
    except ValueError as e:
        raise MalformedResponse(f"alphavantage: {ticker}: {e}") from None
    rename = {"1. open": "open", "2. high": "high", "3. low": "low", "4. close": "close",
              "5. adjusted close": "adj_close", "6. volume": "volume",
              "7. dividend amount": "dividend", "8. split coefficient": "split"}
    if "5. adjusted close" not in frame.columns:  # intraday / unadjusted daily
        rename["5. volume"] = "volume"
    frame = frame.rename(columns=rename)
    missing = {"open", "high", "low", "close", "volume"} - set(frame.columns)
    if missing:
        raise MalformedResponse(f"alphavantage: {ticker}: bars lack {sorted(missing)}")
    meta = body.get("Meta Data") or {}
    tz = next((v for k, v in meta.items() if k.endswith("Time Zone")), "US/Eastern")
    stamps = pd.Series(frame.index, dtype=object)
    if "Daily" not in keys[0]:
        # Intraday keys are exchange-local wall-clock times: make them UTC instants.
        local = pd.to_datetime(stamps, errors="coerce")
        stamps = local.dt.tz_localize(tz, ambiguous="NaT", nonexistent="NaT").dt.tz_convert(
            "UTC").astype(str).where(local.notna(), stamps)
    frame = frame.reset_index(drop=True)
    frame.insert(0, "date", stamps.to_numpy())
    frame.insert(0, "ticker", ticker)
    events: set[str] = set()
    if "dividend" in frame.columns:
        div = pd.to_numeric(frame["dividend"], errors="coerce").fillna(0)
        split = pd.to_numeric(frame["split"], errors="coerce").fillna(1)
        events = set(frame.loc[((div != 0) | (split != 1)).to_numpy(), "date"].astype(str))
    cols = ["ticker", "date", "open", "high", "low", "close", "volume"]
    cols += ["adj_close"] if "adj_close" in frame.columns else []
    return frame[cols], events


@dataclass
class AlphaVantageSource(ProviderSource):
    """Daily adjusted (``interval='1d'``) or intraday bars of one ticker."""

    provider: str = "alphavantage"
    api_key: str = field(default="", repr=False)  # never in a repr, log or report
    interval: str = "1d"

    def request(self, client: ProviderClient, since: pd.Timestamp | None) -> object:
        recent = since is not None and (pd.Timestamp.now(tz="UTC") - since).days < _COMPACT_DAYS
        params = {"symbol": self.ticker, "outputsize": "compact" if recent else "full",
                  "apikey": self.api_key, "datatype": "json"}
        if self.interval == "1d":
            params["function"] = "TIME_SERIES_DAILY_ADJUSTED"
        else:
            params.update(function="TIME_SERIES_INTRADAY", interval=self.interval,
                          adjusted="false", extended_hours="false")
        return client.get_json(f"{self.base_url.rstrip('/')}/query", params=params)

    def parse(self, body: object) -> tuple[pd.DataFrame, set[str]]:
        return parse_series(body, self.ticker)
