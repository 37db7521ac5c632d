"""The offline feature and label tables, written and read as one atomic pair.

``features.parquet`` and ``labels.parquet`` are two views of one pipeline run; a reader that got
the features of one run and the labels of another would train on misaligned data. Each file
alone was atomic, the pair was not (a writer killed between the two renames, or a reader that
opened one file before a rewrite and the other after, saw two generations).

Layout under ``<data_dir>/offline``::

    tables/features.parquet      one generation, built in a staged sibling directory and
    tables/labels.parquet        swapped in whole by ``replace_dir`` (RENAME_EXCHANGE)
    features.parquet -> tables/features.parquet   relative symlinks, so every existing reader
    labels.parquet   -> tables/labels.parquet     (Feast sources, training, benches) still works

A path read through the symlinks resolves ``tables`` once per file, so two such reads can still
straddle a swap. :func:`pinned_tables` opens the ``tables`` directory once and both files through
that one directory descriptor, so both come from the same generation; if the writer removed the
generation between the two opens, it starts again from the current one (never a mix).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from features.durable import _umask, file_lock, fsync_dir
from features.lake import staged_dir

TABLES_DIR = "tables"
TABLE_FILES = {"features": "features.parquet", "labels": "labels.parquet"}
_LOCK = ".tables.lock"
_PIN_ATTEMPTS = 50


def write_tables(offline_dir: Path, fill: Callable[[dict[str, Path]], None]) -> dict[str, Path]:
    """Let ``fill(paths)`` write both tables into a staged directory, then swap it in as
    ``offline/tables`` in one step and make sure the flat symlinks exist.

    Writers are serialised by an ``flock`` (a killed writer's lock dies with it); a writer
    killed before the swap leaves the previous pair untouched plus a hidden staged directory
    that the next writer removes. Returns the flat paths (what readers open)."""
    offline_dir.mkdir(parents=True, exist_ok=True)
    with file_lock(offline_dir / _LOCK):
        _sweep_stages(offline_dir)
        with staged_dir(offline_dir / TABLES_DIR) as stage:
            os.chmod(stage, 0o777 & ~_umask())  # mkdtemp makes 0700; readers may be others
            fill({k: stage / name for k, name in TABLE_FILES.items()})
            missing = [n for n in TABLE_FILES.values() if not (stage / n).is_file()]
            if missing:
                raise RuntimeError(f"staged offline tables lack {missing}")
        link_flat_paths(offline_dir)
    return {k: offline_dir / name for k, name in TABLE_FILES.items()}


def write_table_pair(offline_dir: Path, features: pa.Table, labels: pa.Table
                     ) -> dict[str, Path]:
    """Both tables as one atomic generation (see :func:`write_tables`)."""
    def fill(paths: dict[str, Path]) -> None:
        pq.write_table(features, paths["features"])
        pq.write_table(labels, paths["labels"])

    return write_tables(offline_dir, fill)


def link_flat_paths(offline_dir: Path) -> None:
    """Point ``offline/<name>`` at ``tables/<name>`` (a legacy regular file is replaced by the
    symlink in one rename, so the flat path never disappears)."""
    changed = False
    for name in TABLE_FILES.values():
        flat, target = offline_dir / name, f"{TABLES_DIR}/{name}"
        if flat.is_symlink() and os.readlink(flat) == target:
            continue
        tmp = offline_dir / f".{name}.link.tmp"
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        os.symlink(target, tmp)
        os.replace(tmp, flat)
        changed = True
    if changed:
        fsync_dir(offline_dir)


def _sweep_stages(offline_dir: Path) -> None:
    for p in offline_dir.glob(f".{TABLES_DIR}.*"):
        if p.is_dir() and not p.name.endswith(".old"):  # .old is recover_dir's business
            shutil.rmtree(p, ignore_errors=True)


@contextlib.contextmanager
def pinned_tables(offline_dir: Path) -> Iterator[dict[str, str]]:
    """Paths to one consistent generation of both tables, valid inside the ``with`` block.

    Yields ``{"features": "/proc/self/fd/N", "labels": "/proc/self/fd/M"}``: open file
    descriptors of both files, taken through one descriptor of the ``tables`` directory, so any
    reader in this process (pyarrow, pandas, DuckDB) sees the same pair even if a writer swaps
    and deletes that generation meanwhile. A data dir in the old flat layout (regular files, no
    ``tables/``) is read from the flat paths, without the pair guarantee."""
    tables = offline_dir / TABLES_DIR
    if not tables.is_dir():
        yield {k: str(offline_dir / name) for k, name in TABLE_FILES.items()}
        return
    fds = _open_pair(tables)
    try:
        yield {k: f"/proc/self/fd/{fd}" for k, fd in fds.items()}
    finally:
        for fd in fds.values():
            os.close(fd)


def _open_pair(tables: Path) -> dict[str, int]:
    for _ in range(_PIN_ATTEMPTS):
        dfd = os.open(tables, os.O_RDONLY | os.O_DIRECTORY)
        fds: dict[str, int] = {}
        try:
            for k, name in TABLE_FILES.items():
                fds[k] = os.open(name, os.O_RDONLY, dir_fd=dfd)
            return fds
        except FileNotFoundError:
            # The writer swapped this generation out and removed it between our opens: the
            # files we got are from it, the rest are gone. Start over on the current one.
            for fd in fds.values():
                os.close(fd)
        finally:
            os.close(dfd)
    raise OSError(errno.EAGAIN, f"{tables}: no stable generation after {_PIN_ATTEMPTS} tries")


def read_pair(offline_dir: Path, feature_columns: list[str] | None = None,
              label_columns: list[str] | None = None) -> tuple[pa.Table, pa.Table]:
    """Features and labels of one generation (see :func:`pinned_tables`)."""
    with pinned_tables(offline_dir) as paths:
        with open(paths["features"], "rb") as f:
            feats = pq.read_table(f, columns=feature_columns)
        with open(paths["labels"], "rb") as f:
            labs = pq.read_table(f, columns=label_columns)
    return feats, labs

