"""Tamper-evident, append-only prediction audit log under ``<data_dir>/audit/``.

Format: one JSON object per line. Line ``n`` of a file carries ``seq`` (= n), ``prev`` (the
``hash`` of line n-1) and ``hash`` = SHA-256 of ``prev`` + the line's bytes without the
``,"hash":...`` suffix. Line 0 is the file's **anchor** (``"anchor": {...}``: file name,
writer pid, a random nonce, and the last hash of the writer's previous file, so a deleted
rotated file is noticed too). Editing, deleting or reordering any record breaks the chain at
that line; :func:`verify_audit` (``stockray audit verify``) reports where. A clean ``close``
writes a final ``seal`` record with the record count, so a truncated tail of a closed file is
detected; a file without a seal is reported as *unsealed* (its writer crashed or still runs).
Hash chains make tampering evident, not impossible: whoever can rewrite the whole file can
recompute every hash. Ship files off the box (or keep the last hashes elsewhere) for more.

Durability policy:

- A record is written with **one** ``os.write`` on an ``O_APPEND`` descriptor: once
  ``append`` returns, the line survives a crash or ``kill -9`` of the writer.
- ``fsync`` runs at least every ``fsync_every_s`` (default 1 s; 0 = after every line): after
  an append, or by a background flusher when no further append comes; and on :meth:`close`
  (replica shutdown, interpreter exit). An OS crash loses at most that window.
- A torn last line (power loss mid-write) can only be a file's tail: :func:`read_audit` skips
  it and :func:`verify_audit` reports it as a warning, not as tampering.
- One file per writer process and UTC day, rotated beyond ``max_file_bytes``
  (``predictions-YYYYMMDD-<pid>-<n>.jsonl``); files older than ``retention_days`` are deleted
  at rotation. Files are 0600, the directory 0700.
- No raw oversized payloads: a string over 256 characters is stored as its length, SHA-256 and
  first 64 characters; a list over 300 items keeps 300 and the count.

Record fields: ``ts`` (epoch s), ``request_id``, ``rpc``, ``key`` (API key name, never the
token), ``request`` (the request as JSON), ``rows`` (per ticker: ``features_sha256`` and per
horizon the prediction, ``alias:name:version`` and the staleness flag; ``shadow``: the
challenger's answers) or ``error`` (code + message), and ``latency_ms``.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import re
import secrets
import threading
import time
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

GENESIS = "0" * 64
MAX_STR = 256
MAX_LIST = 300
_HASH_SUFFIX = re.compile(rb',"hash":"([0-9a-f]{64})"\}$')
_NAME = re.compile(r"predictions-(\d{8})-(\d+)-(\d+)\.jsonl$")


def bounded(value: Any) -> Any:
    """``value`` with oversized strings replaced by a digest and long lists cut."""
    if isinstance(value, str):
        if len(value) <= MAX_STR:
            return value
        return {"truncated": len(value), "sha256": hashlib.sha256(value.encode()).hexdigest(),
                "head": value[:64]}
    if isinstance(value, dict):
        return {str(k)[:MAX_STR]: bounded(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        out = [bounded(v) for v in value[:MAX_LIST]]
        if len(value) > MAX_LIST:
            out.append({"truncated_items": len(value)})
        return out
    return value


def _line(body: dict[str, Any], prev: str) -> tuple[bytes, str]:
    raw = json.dumps(body, separators=(",", ":"), default=str).encode()
    digest = hashlib.sha256(prev.encode() + raw[:-1]).hexdigest()
    return raw[:-1] + b',"hash":"' + digest.encode() + b'"}\n', digest


class AuditLog:
    """Thread-safe hash-chained JSONL appender (see the module docstring)."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        fsync_every_s: float = 1.0,
        max_file_bytes: int = 64 * 1024 * 1024,
        retention_days: float = 90.0,
    ) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._fsync_every_s = fsync_every_s
        self._max_bytes = max_file_bytes
        self._retention_s = retention_days * 86400.0
        self._lock = threading.Lock()
        self._fd = -1
        self._day = ""
        self._part = 0
        self._size = 0
        self._seq = 0
        self._prev = GENESIS
        self._last_file_hash = ""
        self._dirty = False
        self._last_sync = 0.0
        self._closed = False
        self.path: Path | None = None
        if fsync_every_s > 0:
            ref = weakref.ref(self)
            threading.Thread(target=_flusher, args=(ref, fsync_every_s), daemon=True,
                             name="audit-fsync").start()
        atexit.register(_close_ref, weakref.ref(self))

    # ---- files ----
    def _write(self, body: dict[str, Any]) -> None:
        body = {**body, "seq": self._seq, "prev": self._prev}
        data, digest = _line(body, self._prev)
        view = memoryview(data)
        while view:  # a regular-file write is whole unless the disk is full
            n = os.write(self._fd, view)
            view = view[n:]
        self._size += len(data)
        self._seq += 1
        self._prev = digest
        self._dirty = True

    def _finish(self) -> None:
        """Seal and close the current file (caller holds the lock)."""
        if self._fd < 0:
            return
        self._write({"seal": {"records": self._seq, "ts": time.time()}})
        os.fsync(self._fd)
        os.close(self._fd)
        self._fd = -1
        self._last_file_hash = self._prev
        self._dirty = False

    def _open(self, now: float) -> None:
        day = datetime.fromtimestamp(now, UTC).strftime("%Y%m%d")
        if day == self._day and self._fd >= 0 and self._size < self._max_bytes:
            return
        prev_file = self.path.name if self.path is not None else ""
        self._finish()
        self._part = self._part + 1 if day == self._day else 0
        self._day = day
        while True:
            self.path = self.dir / f"predictions-{day}-{os.getpid()}-{self._part}.jsonl"
            try:
                self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL,
                                   0o600)
                break
            except FileExistsError:  # a previous process with our pid: never append to it
                self._part += 1
        self._size, self._seq, self._prev = 0, 0, GENESIS
        self._write({"anchor": {"file": self.path.name, "pid": os.getpid(), "ts": now,
                                "nonce": secrets.token_hex(16), "prev_file": prev_file,
                                "prev_file_hash": self._last_file_hash}})
        self._expire(now)

    def _expire(self, now: float) -> None:
        for p in self.dir.glob("predictions-*.jsonl"):
            try:
                if p != self.path and now - p.stat().st_mtime > self._retention_s:
                    p.unlink()
            except OSError:
                pass

    # ---- API ----
    def append(self, record: dict[str, Any]) -> None:
        """Write ``record`` (bounded) as one chained line."""
        now = time.time()
        rec = bounded(record)
        with self._lock:
            if self._closed:
                raise OSError("audit log is closed")
            self._open(now)
            self._write(rec)
            if now - self._last_sync >= self._fsync_every_s:
                os.fsync(self._fd)
                self._last_sync, self._dirty = now, False

    def flush(self) -> None:
        """fsync pending lines (the flusher thread calls this)."""
        with self._lock:
            if self._fd >= 0 and self._dirty:
                os.fsync(self._fd)
                self._last_sync, self._dirty = time.time(), False

    def close(self) -> None:
        """Seal, fsync and close the current file (idempotent)."""
        with self._lock:
            if not self._closed:
                self._finish()
                self._closed = True


def _flusher(ref: weakref.ref, every_s: float) -> None:
    while True:
        time.sleep(every_s)
        log = ref()
        if log is None or log._closed:
            return
        try:
            log.flush()
        except OSError:
            pass
        del log


def _close_ref(ref: weakref.ref) -> None:
    log = ref()
    if log is not None:
        log.close()


# ---- reading and verification ----
def _files(path: str | os.PathLike[str]) -> list[Path]:
    p = Path(path)
    if p.is_file():
        return [p]

    def order(f: Path):
        m = _NAME.search(f.name)
        return (m.group(1), int(m.group(2)), int(m.group(3))) if m else (f.name, 0, 0)

    return sorted(p.glob("predictions-*.jsonl"), key=order)


def read_audit(directory: str | os.PathLike[str]) -> tuple[list[dict[str, Any]], int]:
    """All complete *data* records under ``directory`` (anchors and seals left out) and the
    number of torn/corrupt lines skipped."""
    records, bad = [], 0
    for path in _files(directory):
        for rec in _lines(path):
            if rec is None:
                bad += 1
            elif "anchor" not in rec and "seal" not in rec:
                records.append(rec)
    return records, bad


def _raw_lines(path: Path) -> Iterator[tuple[int, bytes, bool]]:
    data = path.read_bytes()
    parts = data.split(b"\n")
    for i, raw in enumerate(parts):
        if raw:
            yield i, raw, i < len(parts) - 1  # complete = followed by a newline


def _lines(path: Path) -> Iterator[dict[str, Any] | None]:
    for _, raw, complete in _raw_lines(path):
        if not complete:
            yield None  # torn tail: the writer died mid-line
            continue
        try:
            obj = json.loads(raw)
        except ValueError:
            yield None
            continue
        yield obj if isinstance(obj, dict) else None


@dataclass
class AuditReport:
    """Result of :func:`verify_audit`: ``errors`` mean tampering (or corruption)."""

    files: int = 0
    records: int = 0
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


def verify_file(path: Path, report: AuditReport, last_hashes: dict[str, str]) -> None:
    prev, seq, sealed = GENESIS, 0, False
    name = path.name
    for lineno, raw, complete in _raw_lines(path):
        where = f"{name}:{lineno + 1}"
        if not complete:
            report.warnings.append(f"{where}: torn last line (writer died mid-write)")
            break
        if sealed:
            report.errors.append(f"{where}: record after the seal (appended after close)")
            break
        m = _HASH_SUFFIX.search(raw)
        try:
            obj = json.loads(raw)
        except ValueError:
            obj = None
        if m is None or not isinstance(obj, dict):
            report.errors.append(f"{where}: not a chained record (edited or corrupt)")
            break
        want = hashlib.sha256(prev.encode() + raw[: m.start()]).hexdigest()
        if obj.get("seq") != seq:
            report.errors.append(
                f"{where}: seq {obj.get('seq')} where {seq} was expected (a record was deleted, "
                "inserted or reordered)"
            )
            break
        if obj.get("prev") != prev or m.group(1).decode() != want:
            report.errors.append(f"{where}: hash chain broken (record edited or reordered)")
            break
        if seq == 0:
            anchor = obj.get("anchor")
            if not isinstance(anchor, dict) or anchor.get("file") != name:
                report.errors.append(f"{where}: first record is not this file's anchor")
                break
            pf, ph = anchor.get("prev_file") or "", anchor.get("prev_file_hash") or ""
            if pf:
                if pf in last_hashes and last_hashes[pf] != ph:
                    report.errors.append(f"{where}: previous file {pf} does not end with the "
                                         "hash this file's anchor recorded (it was changed)")
                elif pf not in last_hashes:
                    report.warnings.append(f"{where}: previous file {pf} is missing (deleted "
                                           "by retention, or removed)")
        elif "seal" in obj:
            sealed = True
            if obj["seal"].get("records") != seq:
                report.errors.append(f"{where}: seal counts {obj['seal'].get('records')} "
                                     f"records, the file has {seq}")
        else:
            report.records += 1
        prev, seq = m.group(1).decode(), seq + 1
    if seq == 0 and path.stat().st_size > 0 and not report.errors:
        report.errors.append(f"{name}: no complete record")
    if not sealed:
        report.warnings.append(f"{name}: unsealed (writer still running or crashed; a "
                               "truncated tail cannot be told apart)")
    last_hashes[name] = prev


def verify_audit(path: str | os.PathLike[str]) -> AuditReport:
    """Check every file's hash chain under ``path`` (a file or the audit directory)."""
    report = AuditReport()
    last: dict[str, str] = {}
    for f in _files(path):
        report.files += 1
        verify_file(f, report, last)
    return report
