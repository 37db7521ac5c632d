"""features.durable: modes set before the first byte, atomic replace, a directory that never
goes missing while it is swapped, crash-gap recovery, and a lock a dead holder releases."""

import os
import stat
import subprocess
import sys
import threading
import time

import pytest

from features import durable


def test_secret_is_never_readable_by_others(tmp_path, monkeypatch):
    seen = []
    real_write = os.write

    def spy(fd, data):  # the mode of the temp file when the first byte goes in
        seen.append(stat.S_IMODE(os.fstat(fd).st_mode))
        return real_write(fd, data)

    monkeypatch.setattr(durable.os, "write", spy)
    old = os.umask(0)  # a permissive umask must not widen a secret
    try:
        durable.atomic_write_text(tmp_path / "api_token", "s3cret", mode=0o600)
    finally:
        os.umask(old)
    assert seen and all(m == 0o600 for m in seen)
    assert stat.S_IMODE((tmp_path / "api_token").stat().st_mode) == 0o600
    assert (tmp_path / "api_token").read_text() == "s3cret"
    assert not list(tmp_path.glob(".*.tmp"))


def test_atomic_write_json_and_with(tmp_path):
    durable.atomic_write_json(tmp_path / "a" / "s.json", {"x": 1})
    assert (tmp_path / "a" / "s.json").read_text() == '{"x": 1}\n'
    durable.atomic_write_with(tmp_path / "b.txt", lambda p: p.write_text("hi"))
    assert (tmp_path / "b.txt").read_text() == "hi"
    with pytest.raises(RuntimeError):
        durable.atomic_write_with(tmp_path / "b.txt", lambda p: (_ for _ in ()).throw(
            RuntimeError("writer failed")))
    assert (tmp_path / "b.txt").read_text() == "hi" and not list(tmp_path.glob(".*.tmp"))


def test_replace_dir_never_leaves_the_directory_missing(tmp_path):
    out = tmp_path / "panel"
    out.mkdir()
    (out / "v").write_text("0")
    missing, stop = [], threading.Event()

    def reader():
        while not stop.is_set():
            try:
                (out / "v").read_text()
            except FileNotFoundError:
                missing.append(1)

    th = threading.Thread(target=reader)
    th.start()
    try:
        for i in range(1, 100):
            tmp = tmp_path / f".panel.{i}"
            tmp.mkdir()
            (tmp / "v").write_text(str(i))
            durable.replace_dir(tmp, out)
    finally:
        stop.set()
        th.join()
    assert (out / "v").read_text() == "99"
    assert not missing, f"reader found the directory missing {len(missing)} times"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["panel"]


def test_recover_dir_after_a_crash_in_the_two_rename_gap(tmp_path):
    out = tmp_path / "models"
    old = tmp_path / ".models.old"
    old.mkdir()
    (old / "bundle.json").write_text("{}")  # crash: out moved aside, new not yet in place
    durable.recover_dir(out)
    assert (out / "bundle.json").exists() and not old.exists()
    old.mkdir()  # crash after the swap, before the old copy was removed
    durable.recover_dir(out)
    assert not old.exists() and (out / "bundle.json").exists()


def test_lock_released_when_holder_is_killed(tmp_path):
    lock = tmp_path / "x.lock"
    code = ("import sys,time; from features.durable import file_lock\n"
            f"with file_lock({str(lock)!r}):\n  print('held', flush=True); time.sleep(60)\n")
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                         env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert p.stdout.readline().strip() == "held"
    got = []
    th = threading.Thread(target=lambda: durable.file_lock(lock).__enter__() or got.append(1))
    th.start()
    time.sleep(0.3)
    assert not got  # blocked while the holder lives
    p.kill()
    p.wait()
    th.join(10)
    assert got == [1]
