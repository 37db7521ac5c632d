"""The hash-chained audit log: verify passes on an honest log and catches an edited, deleted,
reordered or appended record, a truncated sealed tail and a changed rotated file."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

from serving.audit import AuditLog, read_audit, verify_audit

REPO = Path(__file__).resolve().parents[2]


def _write_log(d: Path, n: int = 6, **kw) -> Path:
    log = AuditLog(d, fsync_every_s=0, **kw)
    for i in range(n):
        log.append({"rpc": "Predict", "request": {"ticker": f"T{i}"}, "i": i})
    log.close()
    (path,) = sorted(d.glob("predictions-*.jsonl"))
    return path


def _lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def test_honest_log_verifies_and_reads(tmp_path):
    path = _write_log(tmp_path)
    rep = verify_audit(tmp_path)
    assert rep.ok and rep.files == 1 and rep.records == 6, rep
    assert rep.warnings == []
    recs, bad = read_audit(tmp_path)
    assert [r["i"] for r in recs] == list(range(6)) and bad == 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_edited_record_is_detected(tmp_path):
    path = _write_log(tmp_path)
    lines = _lines(path)
    lines[3] = lines[3].replace(b'"T2"', b'"T9"')  # same length, valid JSON
    path.write_bytes(b"".join(lines))
    rep = verify_audit(tmp_path)
    assert not rep.ok and ":4: hash chain broken" in rep.errors[0]


def test_deleted_record_is_detected(tmp_path):
    path = _write_log(tmp_path)
    lines = _lines(path)
    del lines[2]
    path.write_bytes(b"".join(lines))
    rep = verify_audit(tmp_path)
    assert not rep.ok and ":3: seq 3 where 2 was expected" in rep.errors[0]


def test_reordered_records_are_detected(tmp_path):
    path = _write_log(tmp_path)
    lines = _lines(path)
    lines[2], lines[3] = lines[3], lines[2]
    path.write_bytes(b"".join(lines))
    rep = verify_audit(tmp_path)
    assert not rep.ok and ":3:" in rep.errors[0]


def test_rehashed_edit_without_the_chain_is_detected(tmp_path):
    """Editing a record and fixing *its* hash still breaks the next record's link."""
    import hashlib

    path = _write_log(tmp_path)
    lines = _lines(path)
    obj = json.loads(lines[2])
    obj.pop("hash")
    obj["i"] = 99
    raw = json.dumps(obj, separators=(",", ":")).encode()
    h = hashlib.sha256(obj["prev"].encode() + raw[:-1]).hexdigest()
    lines[2] = raw[:-1] + b',"hash":"' + h.encode() + b'"}\n'
    path.write_bytes(b"".join(lines))
    rep = verify_audit(tmp_path)
    assert not rep.ok and ":4: hash chain broken" in rep.errors[0]


def test_truncated_sealed_tail_and_appended_record(tmp_path):
    path = _write_log(tmp_path)
    lines = _lines(path)
    path.write_bytes(b"".join(lines[:-1]))  # seal removed: tail truncation
    rep = verify_audit(tmp_path)
    assert rep.ok and any("unsealed" in w for w in rep.warnings)  # a crash looks the same
    path.write_bytes(b"".join(lines[:-2] + [lines[-1]]))  # a record cut before the seal
    assert not verify_audit(tmp_path).ok
    path.write_bytes(b"".join(lines + [lines[2]]))  # something appended after the seal
    rep = verify_audit(tmp_path)
    assert not rep.ok and "after the seal" in rep.errors[0]


def test_torn_last_line_is_a_warning_not_tampering(tmp_path):
    log = AuditLog(tmp_path, fsync_every_s=0)
    log.append({"i": 0})
    log.append({"i": 1})
    path = log.path
    with open(path, "ab") as f:
        f.write(b'{"i":2,"seq"')  # the writer died mid-line
    rep = verify_audit(tmp_path)
    assert rep.ok and any("torn" in w for w in rep.warnings)
    assert [r["i"] for r in read_audit(tmp_path)[0]] == [0, 1]


def test_rotation_links_files_and_detects_a_changed_predecessor(tmp_path):
    log = AuditLog(tmp_path, fsync_every_s=0, max_file_bytes=600)
    for i in range(12):
        log.append({"rpc": "Predict", "i": i})
    log.close()
    files = sorted(tmp_path.glob("predictions-*.jsonl"), key=lambda p: int(p.stem.rsplit("-")[-1]))
    assert len(files) >= 3
    rep = verify_audit(tmp_path)
    assert rep.ok and rep.records == 12 and rep.warnings == [], rep
    files[1].unlink()  # a whole rotated file removed
    rep = verify_audit(tmp_path)
    assert rep.ok and any("is missing" in w for w in rep.warnings)


def test_oversized_fields_are_digested(tmp_path):
    log = AuditLog(tmp_path, fsync_every_s=0)
    log.append({"request": {"ticker": "A" * 10_000, "tickers": ["X"] * 1000}})
    log.close()
    (rec,), _ = read_audit(tmp_path)
    t = rec["request"]["ticker"]
    assert t["truncated"] == 10_000 and len(t["sha256"]) == 64 and len(t["head"]) == 64
    assert len(rec["request"]["tickers"]) == 301
    assert rec["request"]["tickers"][-1] == {"truncated_items": 1000}
    (path,) = tmp_path.glob("*.jsonl")
    assert max(len(x) for x in path.read_bytes().splitlines()) < 4000


def test_flusher_fsyncs_without_further_appends(tmp_path, monkeypatch):
    synced = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real(fd)))
    log = AuditLog(tmp_path, fsync_every_s=0.05)
    log.append({"i": 0})  # first append syncs (interval elapsed since 0)
    log.append({"i": 1})  # within the interval: left dirty
    n = len(synced)
    import time

    deadline = time.monotonic() + 5
    while len(synced) == n and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(synced) > n  # the background flusher synced the dirty line
    log.close()


def test_cli_audit_verify(tmp_path):
    path = _write_log(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "ray_apps.cli", "audit", "verify", str(tmp_path)]
    ok = subprocess.run(cmd, check=False, capture_output=True, text=True, env=env, cwd=REPO)
    assert ok.returncode == 0 and "OK" in ok.stdout, ok.stdout + ok.stderr
    lines = _lines(path)
    del lines[3]
    path.write_bytes(b"".join(lines))
    bad = subprocess.run(cmd, check=False, capture_output=True, text=True, env=env, cwd=REPO)
    assert bad.returncode == 1 and "TAMPERED" in bad.stdout, bad.stdout + bad.stderr


def test_new_audit_dir_is_private(tmp_path):
    d = tmp_path / "audit"
    AuditLog(d).close()
    assert stat.S_IMODE(d.stat().st_mode) == 0o700
    rep = verify_audit(d)
    assert rep.ok and rep.files == 0
