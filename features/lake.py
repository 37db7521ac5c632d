"""The Parquet lake: bars partitioned by ticker, quarantine files per run.

Layout below ``<data_dir>/lake``::

    bars/ticker=AAPL/bars.parquet      one file per ticker, sorted by ts, key (ticker, ts)
    quarantine/<run_id>.parquet        rejected rows of one ingestion run, with reasons

Writes never leave a half-written file in place: each file is written beside its target,
fsynced and moved over it, and the directory fsynced (:mod:`features.durable`). A SIGKILL
mid-ingest leaves every partition either as it was or as it is meant to be.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from features.durable import atomic_write_with, replace_dir
from features.schema import BAR_COLUMNS, BARS_SCHEMA, QUARANTINE_SCHEMA


def _partition_dir(bars_dir: Path, ticker: str) -> Path:
    # '^GSPC' is a fine directory name on POSIX; '/' is not a ticker character anywhere.
    if "/" in ticker or ticker in ("", ".", ".."):
        raise ValueError(f"ticker {ticker!r} cannot name a lake partition")
    return bars_dir / f"ticker={ticker}"


def atomic_write_table(table: pa.Table, path: Path) -> None:
    """Write ``table`` to ``path`` via a fsynced temporary sibling and an atomic rename."""
    atomic_write_with(path, lambda tmp: pq.write_table(table, tmp))


def read_table_once(path: Path, **kwargs) -> pa.Table:
    """``pq.read_table`` through one open file handle. Given a path, pyarrow opens the file
    once for the footer and again for the pages; a concurrent :func:`atomic_write_table`
    between the two opens yields "Page was smaller than expected". One handle pins one
    inode, so a reader sees the old file or the new one, never a mix."""
    with open(path, "rb") as f:
        return pq.read_table(f, **kwargs)


@contextmanager
def staged_dir(out: Path) -> Iterator[Path]:
    """Build a directory in a temporary sibling of ``out``; on success it replaces ``out``
    (:func:`replace_dir`), on any exception it is removed and ``out`` is left as it was."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        yield tmp
        replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_bars(bars: pd.DataFrame, bars_dir: Path) -> dict[str, int]:
    """Upsert canonical bars into the lake, one partition per ticker.

    Rows for a (ticker, ts) already in the lake are replaced by the new ones.

    Returns:
        Rows now stored per ticker touched.
    """
    counts = {}
    for ticker, new in bars.groupby("ticker", sort=True):
        target = _partition_dir(bars_dir, str(ticker)) / "bars.parquet"
        if target.exists():
            old = pd.read_parquet(target)
            merged = pd.concat([old, new], ignore_index=True)
            merged = merged.drop_duplicates(["ticker", "ts"], keep="last")
        else:
            merged = new
        merged = merged.sort_values("ts").reset_index(drop=True)[BAR_COLUMNS]
        atomic_write_table(pa.Table.from_pandas(merged, schema=BARS_SCHEMA,
                                                preserve_index=False), target)
        counts[str(ticker)] = len(merged)
    return counts


def read_bars(bars_dir: Path, tickers: list[str] | None = None) -> pd.DataFrame:
    """Read bars of the given tickers (all if None), sorted by (ticker, ts)."""
    if not bars_dir.exists():
        raise FileNotFoundError(f"no lake at {bars_dir}: run `stockray ingest` first")
    parts = sorted(bars_dir.glob("ticker=*/bars.parquet"))
    if tickers is not None:
        wanted = {f"ticker={t}" for t in tickers}
        parts = [p for p in parts if p.parent.name in wanted]
    if not parts:
        raise FileNotFoundError(f"no bars for {tickers or 'any ticker'} in {bars_dir}")
    frame = pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True)
    return frame.sort_values(["ticker", "ts"]).reset_index(drop=True)


def list_tickers(bars_dir: Path) -> list[str]:
    """Tickers that have a partition in the lake."""
    return sorted(p.parent.name.split("=", 1)[1] for p in bars_dir.glob("ticker=*/bars.parquet"))


def write_quarantine(rows: pd.DataFrame, quarantine_dir: Path, run_id: str) -> Path | None:
    """Append a run's quarantined rows to ``quarantine/<run_id>.parquet``; None if no rows."""
    if rows.empty:
        return None
    target = quarantine_dir / f"{run_id}.parquet"
    if target.exists():
        rows = pd.concat([pd.read_parquet(target), rows], ignore_index=True)
    atomic_write_table(pa.Table.from_pandas(rows, schema=QUARANTINE_SCHEMA,
                                            preserve_index=False), target)
    return target


def count_rows(bars_dir: Path) -> int:
    """Rows stored in the lake, from Parquet footers (nothing is read); 0 without a lake."""
    return sum(pq.ParquetFile(p).metadata.num_rows
               for p in bars_dir.glob("ticker=*/bars.parquet"))
