"""Source adapters: every provider yields raw OHLCV rows through one interface.

A source returns a *raw* frame: columns ``ticker, date, open, high, low, close, volume`` and
optionally ``adj_close``, values as the provider gave them (possibly strings, gaps, junk).
Turning raw rows into canonical bars, and rejecting what cannot be trusted, is
``features.validate``'s job, so every source — a packaged dataset, a user's file, an HTTP
API — goes through the same checks.

Also the readers of raw research datasets (the skfolio wheel's CSVs) and `files_sha256`, the
snapshot id of data files.
"""

from __future__ import annotations

import hashlib
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


# -- raw research datasets -------------------------------------------------------------------

def files_sha256(paths) -> str:
    """SHA-256 over the files' names and bytes, in sorted name order (a data snapshot id)."""
    h = hashlib.sha256()
    for p in sorted(Path(x) for x in paths):
        h.update(p.name.encode())
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


#: the two CSVs of the skfolio wheel this project reads (20 S&P 500 stocks, the index)
SKFOLIO_FILES = ("sp500_dataset.csv.gz", "sp500_index.csv.gz")


def skfolio_data_dir() -> Path:
    """Folder of the CSVs inside the installed ``skfolio`` wheel (found without importing it).

    Raises:
        FileNotFoundError: skfolio is not installed (``pip install skfolio==1.12.2 --no-deps``).
    """
    import importlib.util

    spec = importlib.util.find_spec("skfolio")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the skfolio wheel is not installed; its CSVs are the data: "
                                ".venv/bin/pip install skfolio==1.12.2 --no-deps")
    return Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data"


def skfolio_bars(data_dir: Path | None = None) -> pd.DataFrame:
    """Bars of the 20 skfolio stocks plus the S&P 500 index, from adjusted closes only.

    Close-only data: ``open = high = low = close`` and ``volume = 0``. Consequently
    ``atr_norm_14`` degenerates into the 14-day mean absolute close-to-close move (no
    intraday range exists), and ``volume_z_20`` is constant (dropped by
    `training.walkforward.usable_features`).
    """
    d = Path(data_dir) if data_dir else skfolio_data_dir()
    stocks = pd.read_csv(d / SKFOLIO_FILES[0], parse_dates=["Date"])
    index = pd.read_csv(d / SKFOLIO_FILES[1], parse_dates=["Date"])
    long = stocks.melt(id_vars="Date", var_name="ticker", value_name="close")
    idx = index.rename(columns={"SP500": "close"}).assign(ticker=MARKET_TICKER)
    bars = pd.concat([long, idx[["Date", "ticker", "close"]]], ignore_index=True)
    bars = bars.dropna(subset=["close"]).rename(columns={"Date": "ts"})
    bars["ts"] = pd.to_datetime(bars["ts"], utc=True)
    for c in ("open", "high", "low"):
        bars[c] = bars["close"]
    bars["volume"] = 0.0
    bars["adj_factor"] = 1.0
    return bars.sort_values(["ticker", "ts"]).reset_index(drop=True)


def skfolio_snapshot_hash(data_dir: Path | None = None) -> str:
    """`files_sha256` of the two skfolio CSVs (the data snapshot id of a report)."""
    d = Path(data_dir) if data_dir else skfolio_data_dir()
    return files_sha256([d / name for name in SKFOLIO_FILES])
