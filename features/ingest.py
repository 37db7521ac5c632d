"""Ingestion: sources -> validation -> lake, with quarantine and a run summary.

One failing source never stops the others: its error is recorded in the summary and, for a
file, a copy of the file is kept under ``quarantine/files/`` so nothing is lost.
"""

from __future__ import annotations

import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from features.lake import write_bars, write_quarantine
from features.sources import FileSource, Source
from features.validate import validate_raw


@dataclass
class IngestReport:
    """What one ingestion run did, per source."""

    run_id: str
    sources: dict[str, dict] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    quarantine_file: str | None = None
    stored_rows: dict[str, int] = field(default_factory=dict)

    @property
    def rows_quarantined(self) -> int:
        return sum(s["rows_quarantined"] for s in self.sources.values())

    @property
    def rows_ok(self) -> int:
        return sum(s["rows_ok"] for s in self.sources.values())

    def to_dict(self) -> dict:
        return {"run_id": self.run_id, "sources": self.sources, "failed": self.failed,
                "rows_ok": self.rows_ok, "rows_quarantined": self.rows_quarantined,
                "quarantine_file": self.quarantine_file, "stored_rows": self.stored_rows}


def new_run_id(prefix: str = "ingest") -> str:
    return f"{prefix}-{pd.Timestamp.now(tz='UTC'):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"


def ingest(sources: list[Source], bars_dir: Path, quarantine_dir: Path,
           run_id: str | None = None) -> IngestReport:
    """Fetch, validate and store every source; quarantine bad rows and unreadable files."""
    report = IngestReport(run_id=run_id or new_run_id())
    good, bad = [], []
    for src in sources:
        try:
            raw = src.fetch()
        except Exception as exc:  # noqa: BLE001 — a bad source is reported, not fatal
            report.failed[src.name] = f"{type(exc).__name__}: {exc}"
            path = src.path if isinstance(src, FileSource) else getattr(src, "path", None)
            if path is not None and Path(path).exists():  # wrapped file sources too
                keep = quarantine_dir / "files" / f"{report.run_id}-{Path(path).name}"
                keep.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, keep)
                report.failed[src.name] += f" (file kept at {keep})"
            continue
        result = validate_raw(raw, source=src.name, run_id=report.run_id)
        report.sources[src.name] = result.summary()
        good.append(result.bars)
        bad.append(result.quarantine)
    if good:
        report.stored_rows = write_bars(pd.concat(good, ignore_index=True), bars_dir)
    if bad:
        path = write_quarantine(pd.concat(bad, ignore_index=True), quarantine_dir, report.run_id)
        report.quarantine_file = str(path) if path else None
    return report
