"""Append-only prediction audit log: one JSON object per line under ``<data_dir>/audit/``.

Durability policy:

- Each record is serialised first and written with **one** ``os.write`` on an ``O_APPEND``
  descriptor (no user-space buffer): once ``append`` returns, the line is in the kernel's page
  cache and survives a crash or ``kill -9`` of the writer process.
- ``fsync`` runs at most every ``fsync_every_s`` seconds (default 1 s; 0 = after every line)
  on the writing thread, so an OS crash or power loss loses at most that window.
- A torn last line (power loss mid-write) can only be the file's tail; :func:`read_audit`
  skips a final line without its newline and any line that is not valid JSON, counting them.
- One file per writer process and UTC day (``predictions-YYYYMMDD-<pid>.jsonl``): replicas
  never interleave within a file, and old days can be shipped/rotated whole.

Record fields: ``ts`` (epoch s), ``request_id``, ``rpc``, ``request`` (the request as JSON),
``rows`` (per ticker: ``features_sha256`` — SHA-256 of the row's feature values as
name-sorted JSON, 32 hex digits — and per horizon the prediction, ``alias:name:version`` of the
model and the staleness flag; ``shadow``: the challenger's answers in shadow mode) or
``error`` (code + message), and ``latency_ms``.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


class AuditLog:
    """Thread-safe JSONL appender (see the module docstring for the durability policy)."""

    def __init__(self, directory: str | os.PathLike[str], *, fsync_every_s: float = 1.0) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._fsync_every_s = fsync_every_s
        self._lock = threading.Lock()
        self._fd = -1
        self._day = ""
        self._last_sync = 0.0
        self.path: Path | None = None

    def _open(self, now: float) -> None:
        day = datetime.fromtimestamp(now, UTC).strftime("%Y%m%d")
        if day == self._day and self._fd >= 0:
            return
        if self._fd >= 0:
            os.fsync(self._fd)
            os.close(self._fd)
        self.path = self.dir / f"predictions-{day}-{os.getpid()}.jsonl"
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._day = day

    def append(self, record: dict[str, Any]) -> None:
        """Write ``record`` as one line (one ``write`` syscall)."""
        line = (json.dumps(record, separators=(",", ":"), default=str) + "\n").encode()
        now = time.time()
        with self._lock:
            self._open(now)
            view = memoryview(line)
            while view:  # a regular-file write is whole unless the disk is full
                n = os.write(self._fd, view)
                view = view[n:]
            if now - self._last_sync >= self._fsync_every_s:
                os.fsync(self._fd)
                self._last_sync = now

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.fsync(self._fd)
                os.close(self._fd)
                self._fd = -1


def read_audit(directory: str | os.PathLike[str]) -> tuple[list[dict[str, Any]], int]:
    """All complete records under ``directory`` (file, then line order) and the number of
    torn/corrupt lines skipped."""
    records, bad = [], 0
    for path in sorted(Path(directory).glob("predictions-*.jsonl")):
        for rec in _lines(path):
            if rec is None:
                bad += 1
            else:
                records.append(rec)
    return records, bad


def _lines(path: Path) -> Iterator[dict[str, Any] | None]:
    data = path.read_bytes()
    for i, raw in enumerate(data.split(b"\n")):
        if not raw:
            continue
        complete = data.endswith(b"\n") or i < data.count(b"\n")
        if not complete:
            yield None  # torn tail: the writer died mid-line
            continue
        try:
            obj = json.loads(raw)
        except ValueError:
            yield None
            continue
        yield obj if isinstance(obj, dict) else None
