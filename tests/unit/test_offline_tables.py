"""features.parquet / labels.parquet as one atomic pair (features.offline_tables).

A real writer process swaps generation after generation while this process reads pairs: reads
pinned through one directory descriptor never mix generations; naive reads through the two flat
paths can (counted and printed as a figure, not asserted: it depends on timing)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from features.offline_tables import (
    TABLE_FILES,
    TABLES_DIR,
    pinned_tables,
    read_pair,
    write_table_pair,
)

REPO = Path(__file__).resolve().parents[2]
WRITER = """
import sys, time
from pathlib import Path
import pyarrow as pa
from features.offline_tables import write_table_pair
off, n = Path(sys.argv[1]), int(sys.argv[2])
for g in range(1, n + 1):
    rows = 200 + g % 7
    write_table_pair(off, pa.table({"gen": [g] * rows, "x": list(range(rows))}),
                     pa.table({"gen": [g] * rows, "y": list(range(rows))}))
    print(g, flush=True)
"""


def _pair(g: int) -> tuple[pa.Table, pa.Table]:
    return pa.table({"gen": [g] * 3}), pa.table({"gen": [g] * 3})


def _gen(t: pa.Table) -> int:
    vals = set(t.column("gen").to_pylist())
    assert len(vals) == 1, f"one file holds several generations {vals}"  # never: files atomic
    return vals.pop()


def test_flat_paths_are_relative_symlinks_into_one_generation(tmp_path):
    off = tmp_path / "offline"
    write_table_pair(off, *_pair(1))
    write_table_pair(off, *_pair(2))
    for name in TABLE_FILES.values():
        assert (off / name).is_symlink() and os.readlink(off / name) == f"{TABLES_DIR}/{name}"
        assert pd.read_parquet(off / name)["gen"].tolist() == [2, 2, 2]
    # No staged generation is left behind after a completed write.
    assert sorted(p.name for p in off.iterdir()) == [".tables.lock", "features.parquet",
                                                     "labels.parquet", "tables"]
    # The whole offline dir moved elsewhere still resolves (links are relative).
    moved = tmp_path / "moved"
    off.rename(moved)
    f, lab = read_pair(moved)
    assert _gen(f) == _gen(lab) == 2


def test_legacy_flat_files_are_replaced_by_links(tmp_path):
    off = tmp_path / "offline"
    off.mkdir()
    for name in TABLE_FILES.values():  # the layout before this module: plain files
        pq.write_table(pa.table({"gen": [0]}), off / name)
    f, lab = read_pair(off)  # the old layout is still readable
    assert _gen(f) == _gen(lab) == 0
    write_table_pair(off, *_pair(5))
    assert all((off / n).is_symlink() for n in TABLE_FILES.values())
    assert _gen(pq.read_table(off / "labels.parquet")) == 5


def test_a_failed_fill_leaves_the_previous_pair(tmp_path):
    from features.offline_tables import write_tables

    off = tmp_path / "offline"
    write_table_pair(off, *_pair(1))

    def half(paths):  # writes one table, then fails: the pair must not be published
        pq.write_table(pa.table({"gen": [9]}), paths["features"])
        raise RuntimeError("boom")

    try:
        write_tables(off, half)
    except RuntimeError:
        pass
    f, lab = read_pair(off)
    assert _gen(f) == _gen(lab) == 1
    assert not [p for p in off.iterdir() if p.name.startswith(".tables.") and p.is_dir()]


def test_pinned_pairs_never_mix_while_a_writer_swaps_generations(tmp_path):
    off = tmp_path / "offline"
    write_table_pair(off, *_pair(0))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    w = subprocess.Popen([sys.executable, "-c", WRITER, str(off), "250"], env=env,
                         stdout=subprocess.PIPE, text=True)
    assert w.stdout.readline().strip() == "1"  # the writer is swapping
    pinned = {"reads": 0, "mixed": 0, "gens": set()}
    naive = {"reads": 0, "mixed": 0, "failed": 0}
    try:
        deadline = time.monotonic() + 60
        while w.poll() is None and time.monotonic() < deadline:
            with pinned_tables(off) as paths:
                # Two separate opens of each file, as any path-taking reader (DuckDB, pandas)
                # would do; the pinned descriptors make them the same generation.
                g_f = _gen(pq.read_table(paths["features"], columns=["gen"]))
                g_l = _gen(pq.read_table(paths["labels"], columns=["gen"]))
            pinned["reads"] += 1
            pinned["mixed"] += g_f != g_l
            pinned["gens"].add(g_f)
            try:
                n_f = _gen(pq.read_table(off / "features.parquet", columns=["gen"]))
                n_l = _gen(pq.read_table(off / "labels.parquet", columns=["gen"]))
                naive["mixed"] += n_f != n_l
            except (OSError, ValueError):  # a naive read can also find its file deleted
                naive["failed"] += 1
            naive["reads"] += 1
    finally:
        if w.poll() is None:
            w.kill()
        w.wait(timeout=30)
    print(json.dumps({"pinned_reads": pinned["reads"], "pinned_mixed": pinned["mixed"],
                      "generations_seen": len(pinned["gens"]), "naive_reads": naive["reads"],
                      "naive_mixed": naive["mixed"], "naive_failed": naive["failed"],
                      "load_avg_1m": os.getloadavg()[0]}))
    assert w.returncode == 0
    assert pinned["reads"] > 50 and len(pinned["gens"]) > 10  # the reads did overlap swaps
    assert pinned["mixed"] == 0
    f, lab = read_pair(off)
    assert _gen(f) == _gen(lab) == 250
