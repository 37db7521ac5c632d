"""Any HTTP endpoint that answers OHLCV as CSV or JSON records -> raw rows.

Configured by a URL template (``STOCKRAY_HTTP_SOURCE_URL``) with ``{ticker}`` and optionally
``{since}`` (YYYY-MM-DD, empty for all history), e.g.
``https://prices.example.com/v1/bars/{ticker}.csv?start={since}``.

CSV: a header row; column names in any common spelling (``features.sources.normalize_columns``:
Yahoo's ``Adj Close``, ``timestamp``, ``symbol``...). JSON: a list of records, or an object
whose ``data`` / ``results`` / ``bars`` / ``records`` member is that list. A ``ticker`` column is
optional (the requested ticker fills it). Values stay text so validation sees every bad cell.
An ``adj_close`` column, if present, is the provider's adjusted close (split and dividend).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass

import pandas as pd

from features.providers.http import MalformedResponse, ProviderClient
from features.providers.source import ProviderSource
from features.sources import RAW_COLUMNS, normalize_columns

_RECORD_KEYS = ("data", "results", "bars", "records")


def parse_body(text: str, content_type: str, ticker: str) -> pd.DataFrame:
    """Raw rows from a CSV or JSON body (JSON if the type says so or the body starts with
    ``[``/``{``)."""
    head = text.lstrip()[:1]
    try:
        if "json" in content_type or head in ("[", "{"):
            doc = json.loads(text)
            if isinstance(doc, dict):
                doc = next((doc[k] for k in _RECORD_KEYS if isinstance(doc.get(k), list)), None)
            if not isinstance(doc, list) or not all(isinstance(r, dict) for r in doc):
                raise MalformedResponse(f"http: {ticker}: JSON is not a list of records",
                                        text.encode())
            frame = pd.DataFrame.from_records(doc).astype(object)
        else:
            frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    except (ValueError, pd.errors.ParserError) as e:
        raise MalformedResponse(f"http: {ticker}: unreadable body ({e})", text.encode()) from None
    frame = normalize_columns(frame)
    if "ticker" not in frame.columns:
        frame["ticker"] = ticker
    missing = [c for c in RAW_COLUMNS if c not in frame.columns]
    if missing:
        raise MalformedResponse(f"http: {ticker}: missing column(s) {missing}; found "
                                f"{list(frame.columns)}", text.encode())
    return frame


@dataclass
class HttpSource(ProviderSource):
    """Bars of one ticker from a CSV/JSON URL template (``base_url``, see module doc)."""

    provider: str = "http"

    def request(self, client: ProviderClient, since: pd.Timestamp | None) -> object:
        day = since.strftime("%Y-%m-%d") if since is not None else ""
        url = self.base_url.format(ticker=self.ticker, since=day)
        return client.get_text(url)

    def parse(self, body: object) -> tuple[pd.DataFrame, set[str]]:
        text, ctype = body  # type: ignore[misc]
        # A generic source names no events: its adj_close column is taken as given.
        return parse_body(text, ctype, self.ticker), set()
