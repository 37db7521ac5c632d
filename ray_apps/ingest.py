"""Ingest market data into the lake: ``python -m ray_apps.ingest [--file PATH --ticker T]``.

Default: the embedded universe (bokeh-sampledata stocks + S&P 500 from arch). With ``--file``:
a user's OHLCV CSV/Parquet through the same validation and quarantine.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from features.ingest import IngestReport, ingest
from features.pipeline_metrics import record_ingest
from features.settings import Settings
from features.sources import DEFAULT_TICKERS, MARKET_TICKER, FileSource, default_sources
from features.universe_index import IndexTickerSource


@dataclass
class IngestConfig:
    """What to ingest."""

    files: list[Path] = field(default_factory=list)  # user files; empty = embedded default
    ticker: str | None = None  # ticker for files without a ticker column
    index_file: Path | None = None  # the user's market index series (stored as the index)
    index_ticker: str | None = None  # a ticker of the files that is the market index
    tickers: tuple[str, ...] = DEFAULT_TICKERS  # embedded universe subset
    start: str | None = None  # first date (YYYY-MM-DD) of the embedded data
    end: str | None = None  # last date of the embedded data


def main(cfg: IngestConfig, settings: Settings) -> IngestReport:
    settings = settings.resolved()
    if cfg.files:
        sources = [FileSource(Path(p), ticker=cfg.ticker) for p in cfg.files]
        if cfg.index_ticker:
            sources = [IndexTickerSource(s, cfg.index_ticker) for s in sources]
        if cfg.index_file:
            sources.append(FileSource(Path(cfg.index_file), ticker=MARKET_TICKER,
                                      name=f"index:{Path(cfg.index_file).name}"))
    elif cfg.index_file or cfg.index_ticker:
        raise ValueError("--index-file / --index-ticker go with --file (the embedded universe "
                         f"already has its index {MARKET_TICKER})")
    else:
        sources = default_sources(cfg.start, cfg.end, tuple(cfg.tickers))
    report = ingest(sources, settings.bars_dir, settings.quarantine_dir)
    if cfg.index_ticker and not any(getattr(s, "found", 0) for s in sources):
        report.failed[f"index:{cfg.index_ticker}"] = (
            f"--index-ticker {cfg.index_ticker} matched no row of the files; the market "
            "context will be derived from the universe instead")
    record_ingest(report.sources)  # Prometheus gauges when a Ray cluster is connected
    return report


def describe(report: IngestReport) -> str:
    lines = [f"ingest run {report.run_id}"]
    for name, s in report.sources.items():
        rules = ", ".join(f"{k}={v}" for k, v in s["by_rule"].items()) or "none"
        lines.append(f"  {name:<28} {s['rows_in']:>7} rows in, {s['rows_ok']:>7} stored, "
                     f"{s['rows_quarantined']:>5} quarantined (rules: {rules})"
                     + (f", {s['unsorted_rows']} out of order (sorted)"
                        if s["unsorted_rows"] else ""))
    for name, err in report.failed.items():
        lines.append(f"  {name:<28} FAILED: {err}")
    if report.quarantine_file:
        lines.append(f"  quarantined rows: {report.quarantine_file}")
    return "\n".join(lines)


if __name__ == "__main__":
    r = main(IngestConfig(), Settings())
    print(describe(r))
    print(json.dumps(r.to_dict(), indent=2, default=str))
