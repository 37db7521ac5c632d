"""Crash-safe file and directory writes: the one place state reaches the disk.

A SIGKILL or power cut at any instruction leaves every target either as it was or as it is
meant to be:

- :func:`atomic_write_bytes` / :func:`atomic_write_text` / :func:`atomic_write_json`: the bytes
  go to a temporary sibling created with its final mode (a 0600 secret is never readable by
  others, not even for a moment), the file is fsynced, renamed over the target, and the
  directory is fsynced so the rename itself is durable.
- :func:`replace_dir`: swaps a complete staged directory in with ``renameat2(RENAME_EXCHANGE)``
  where the kernel and filesystem support it, so ``out`` exists at every instant. Elsewhere it
  falls back to two renames; if a crash hits the gap, :func:`recover_dir` (run at the start of
  the next swap, and by the crash-consistency checks) moves the ``.<name>.old`` sibling back.
- :func:`file_lock`: an ``flock`` on a sibling lock file, released by the kernel when the holder
  dies, so a killed writer never wedges the next one.

Leftover ``.*.tmp`` files from a killed writer are harmless (never read) and removed by
:func:`sweep_tmp`.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import fcntl
import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

_RENAME_EXCHANGE = 2  # linux/fs.h
_AT_FDCWD = -100


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """fsync a directory so a rename or create inside it survives a power cut."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def tmp_sibling(path: Path) -> Path:
    """A unique hidden temporary name beside ``path`` (same filesystem, so rename is atomic)."""
    return path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")


def atomic_write_with(path: str | os.PathLike[str], write: Callable[[Path], None], *,
                      mode: int | None = None) -> None:
    """Let ``write(tmp)`` fill a temporary sibling (for writers that want a path, e.g.
    ``pq.write_table``), then fsync it, rename it over ``path`` and fsync the directory.
    ``mode`` is set on the empty temp file before ``write`` runs."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_sibling(path)
    final_mode = (0o666 & ~_umask()) if mode is None else mode
    try:
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, final_mode))
        os.chmod(tmp, final_mode)
        write(tmp)
        publish_file(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def publish_file(tmp: str | os.PathLike[str], path: str | os.PathLike[str]) -> None:
    """Move a finished temp file over ``path`` durably (fsync file, rename, fsync directory)."""
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(Path(path).parent)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, *,
                       mode: int | None = None) -> None:
    """Durably replace ``path`` by ``data`` (see module docstring); ``mode`` e.g. 0o600."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_sibling(path)
    final_mode = (0o666 & ~_umask()) if mode is None else mode
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, final_mode)
    try:
        try:
            os.fchmod(fd, final_mode)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        fsync_dir(path.parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def atomic_write_text(path: str | os.PathLike[str], text: str, *, mode: int | None = None,
                      encoding: str = "utf-8") -> None:
    atomic_write_bytes(path, text.encode(encoding), mode=mode)


def atomic_write_json(path: str | os.PathLike[str], obj: Any, *, mode: int | None = None,
                      **dumps: Any) -> None:
    atomic_write_text(path, json.dumps(obj, **dumps) + "\n", mode=mode)


def _umask() -> int:
    # os.umask can only be read by setting it; do it once per process.
    global _UMASK
    if _UMASK is None:
        cur = os.umask(0o022)
        os.umask(cur)
        _UMASK = cur
    return _UMASK


_UMASK: int | None = None


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2 RENAME_EXCHANGE); False if unsupported."""
    libc = _libc()
    if libc is None or not hasattr(libc, "renameat2"):
        return False
    rc = libc.renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


_LIBC: Any = False


def _libc():
    global _LIBC
    if _LIBC is False:
        name = ctypes.util.find_library("c")
        _LIBC = ctypes.CDLL(name, use_errno=True) if name else None
    return _LIBC


def _old_sibling(out: Path) -> Path:
    return out.parent / f".{out.name}.old"


def recover_dir(out: str | os.PathLike[str]) -> None:
    """Finish or undo a :func:`replace_dir` a crash interrupted: if ``out`` is missing but its
    ``.old`` sibling exists, move it back; if both exist, the swap completed, drop the old."""
    out = Path(out)
    old = _old_sibling(out)
    if not old.exists():
        return
    if out.exists():
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(old, out)
        fsync_dir(out.parent)


def fsync_tree(root: Path) -> None:
    """fsync every file and directory under ``root`` (before it is renamed into place)."""
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            fd = os.open(os.path.join(dirpath, f), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(dirpath)


def replace_dir(tmp: str | os.PathLike[str], out: str | os.PathLike[str]) -> None:
    """Replace directory ``out`` by the complete directory ``tmp`` (``out`` need not exist).

    ``tmp`` is fsynced first. With an atomic exchange ``out`` never disappears; otherwise a crash
    in the two-rename gap is repaired by :func:`recover_dir` (see module docstring)."""
    tmp, out = Path(tmp), Path(out)
    fsync_tree(tmp)
    recover_dir(out)
    if not out.exists():
        os.replace(tmp, out)
        fsync_dir(out.parent)
        return
    if _exchange(tmp, out):
        fsync_dir(out.parent)
        shutil.rmtree(tmp, ignore_errors=True)  # tmp now holds the old contents
        return
    old = _old_sibling(out)
    shutil.rmtree(old, ignore_errors=True)
    os.replace(out, old)
    os.replace(tmp, out)
    fsync_dir(out.parent)
    shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def file_lock(path: str | os.PathLike[str]) -> Iterator[None]:
    """Exclusive ``flock`` on ``path`` (created if missing) for the ``with`` body. The kernel
    drops it when the holder exits, so a SIGKILLed holder never blocks the next writer."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def sweep_tmp(directory: str | os.PathLike[str]) -> int:
    """Remove temp files a killed writer left in ``directory``; returns how many."""
    n = 0
    for p in Path(directory).glob(".*.tmp"):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
            n += 1
    return n
