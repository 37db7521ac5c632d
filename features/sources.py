"""Source adapters: every provider yields raw OHLCV rows through one interface.

A source returns a *raw* frame: columns ``ticker, date, open, high, low, close, volume`` and
optionally ``adj_close``, values as the provider gave them (possibly strings, gaps, junk).
Turning raw rows into canonical bars, and rejecting what cannot be trusted, is
``features.validate``'s job, so every source — a packaged dataset, a user's file, an HTTP
API — goes through the same checks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

import pandas as pd

RAW_COLUMNS = ["ticker", "date", "open", "high", "low", "close", "volume"]
OPTIONAL_RAW_COLUMNS = ["adj_close"]

#: The default universe: real daily OHLCV shipped in the ``bokeh-sampledata`` wheel
#: (Quandl WIKI, public domain), 2000-03..2013-03.
DEFAULT_TICKERS = ("AAPL", "GOOG", "IBM", "MSFT", "FB")
#: The market series every ticker is compared with (S&P 500 index, from the ``arch`` wheel).
MARKET_TICKER = "^GSPC"

# Column spellings seen in provider exports (Yahoo CSV, Alpha Vantage, Quandl) -> raw name.
_ALIASES = {
    "symbol": "ticker",
    "timestamp": "date",
    "datetime": "date",
    "time": "date",
    "adj close": "adj_close",
    "adjusted_close": "adj_close",
    "adjclose": "adj_close",
    "adj. close": "adj_close",
}


@runtime_checkable
class Source(Protocol):
    """Anything that can produce raw OHLCV rows."""

    name: str

    def fetch(self) -> pd.DataFrame:
        """Return the raw rows (see module docstring for the columns)."""
        ...


def normalize_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """Lower-case column names and map common provider spellings to the raw names."""
    renamed = {}
    for col in frame.columns:
        key = str(col).strip().lower().replace("-", "_")
        renamed[col] = _ALIASES.get(key, _ALIASES.get(key.replace("_", " "), key))
    return frame.rename(columns=renamed)


@dataclass
class BokehSampleSource:
    """Daily OHLCV of AAPL, GOOG, IBM, MSFT and FB from the ``bokeh-sampledata`` package."""

    tickers: tuple[str, ...] = DEFAULT_TICKERS
    start: str | None = None
    end: str | None = None
    name: str = "bokeh-sampledata"

    def fetch(self) -> pd.DataFrame:
        from bokeh_sampledata.stocks import data

        frame = data[data["ticker"].isin(self.tickers)].copy()
        return _date_window(frame, self.start, self.end)


@dataclass
class ArchIndexSource:
    """Daily OHLCV of the S&P 500 (``^GSPC``) or NASDAQ (``^IXIC``) index from ``arch``."""

    ticker: str = MARKET_TICKER
    start: str | None = None
    end: str | None = None
    name: str = "arch"

    def fetch(self) -> pd.DataFrame:
        from arch.data import nasdaq, sp500

        loaders = {"^GSPC": sp500, "^IXIC": nasdaq}
        if self.ticker not in loaders:
            raise ValueError(f"arch ships only {sorted(loaders)}, not {self.ticker!r}")
        frame = normalize_columns(loaders[self.ticker].load().reset_index())
        frame["ticker"] = self.ticker
        return _date_window(frame, self.start, self.end)


@dataclass
class FileSource:
    """A user's OHLCV file (CSV or Parquet).

    Needs columns date, open, high, low, close, volume (any common spelling, e.g. Yahoo's
    ``Adj Close``), optional adj_close, and a ticker column unless ``ticker`` is given.
    """

    path: Path
    ticker: str | None = None
    name: str = field(default="")

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        self.name = self.name or f"file:{self.path.name}"

    def fetch(self) -> pd.DataFrame:
        if not self.path.exists():
            raise FileNotFoundError(f"{self.path} does not exist")
        suffix = "".join(self.path.suffixes).lower()
        if suffix.endswith((".parquet", ".pq")):
            frame = pd.read_parquet(self.path)
        elif suffix.endswith((".csv", ".csv.gz", ".txt")):
            # Read everything as text: a malformed cell must reach validation (and the
            # quarantine) rather than fail the whole file or be coerced silently.
            frame = pd.read_csv(self.path, dtype=str, keep_default_na=False)
        else:
            raise ValueError(f"{self.path}: unsupported file type {suffix!r}; use .csv or .parquet")
        frame = normalize_columns(frame)
        if self.ticker is not None:
            frame["ticker"] = self.ticker
        missing = [c for c in RAW_COLUMNS if c not in frame.columns]
        if missing:
            raise ValueError(
                f"{self.path}: missing column(s) {missing}; found {list(frame.columns)}. "
                "Pass --ticker if the file has no ticker column."
            )
        return frame


def _date_window(frame: pd.DataFrame, start: str | None, end: str | None) -> pd.DataFrame:
    dates = pd.to_datetime(frame["date"])
    keep = pd.Series(True, index=frame.index)
    if start:
        keep &= dates >= pd.Timestamp(start)
    if end:
        keep &= dates <= pd.Timestamp(end)
    return frame[keep].reset_index(drop=True)


def default_sources(start: str | None = None, end: str | None = None,
                    tickers: tuple[str, ...] = DEFAULT_TICKERS) -> list[Source]:
    """The embedded default universe: bokeh-sampledata stocks plus the S&P 500 index."""
    return [BokehSampleSource(tickers=tickers, start=start, end=end),
            ArchIndexSource(start=start, end=end)]
