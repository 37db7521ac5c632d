"""The memory-bounded run (features.stream) writes exactly what the in-memory path writes:
DuckDB's cross-sectional ranks equal ``add_cross_sectional`` bit for bit (ties, NaN, inf,
-0.0, one-ticker dates), and the offline tables of a real universe are identical."""

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from features.contracts import check_bars, frame_stats
from features.ingest import ingest
from features.lake import read_bars, write_bars
from features.pipeline import (
    _GROUP_COLUMNS,
    ALL_LABEL_COLUMNS,
    CROSS_SECTIONAL_BASES,
    FEATURE_NAMES,
    add_cross_sectional,
    build_features_local,
)
from features.sources import MARKET_TICKER, default_sources
from features.store import write_offline
from features.stream import (
    build_offline,
    chunk_rows,
    duckdb_connect,
    plan_chunks,
    ranks_query,
)


def test_duckdb_ranks_equal_the_pandas_reference_on_ties_nan_and_odd_values(tmp_path):
    rng = np.random.default_rng(0)
    days = pd.bdate_range("2020-01-01", periods=40, tz="UTC")
    tickers = [f"T{i}" for i in range(7)]
    frame = pd.DataFrame([(t, d) for t in tickers for d in days], columns=["ticker", "ts"])
    for c in _GROUP_COLUMNS[2:]:
        frame[c] = np.nan
    n = len(frame)
    for base in CROSS_SECTIONAL_BASES:
        # few distinct values: many ties; NaN, +-inf, -0.0 and 0.0 mixed in
        v = rng.choice([-1.5, -0.0, 0.0, 0.25, 0.25, 2.0, np.inf, -np.inf, np.nan], n)
        frame[base] = v
    # a date with one value, a date with none, a date where everything ties
    frame.loc[frame["ts"] == days[3], "ret_1d"] = [0.1, *[np.nan] * 6]
    frame.loc[frame["ts"] == days[4], "ret_1d"] = np.nan
    frame.loc[frame["ts"] == days[5], "ret_1d"] = 0.7
    frame = frame.drop(index=rng.choice(n, 30, replace=False)).reset_index(drop=True)
    want = add_cross_sectional(frame.copy())

    part = frame.assign(_row=np.arange(len(frame), dtype=np.int64))
    (tmp_path / "parts").mkdir()
    pq.write_table(pa.Table.from_pandas(part, preserve_index=False),
                   tmp_path / "parts" / "part-00000.parquet")
    con = duckdb_connect(tmp_path / "duckdb", 0.25)
    got = con.sql(ranks_query(str(tmp_path / "parts" / "*.parquet"))).df()
    assert got["_row"].tolist() == list(range(len(frame)))
    for base in CROSS_SECTIONAL_BASES:
        col = f"cs_rank_{base}"
        np.testing.assert_array_equal(got[col].to_numpy(float), want[col].to_numpy(float),
                                      err_msg=col)
    assert (want.loc[want["ts"] == days[3], "cs_rank_ret_1d"].dropna() == 0.5).all()


def test_chunks_keep_tickers_whole_and_within_the_budget():
    counts = {"A": 5, "B": 5, "C": 12, "D": 1, "E": 4}
    chunks = plan_chunks(counts, max_rows=10)
    assert chunks == [["A", "B"], ["C"], ["D", "E"]]
    assert [t for c in chunks for t in c] == sorted(counts)
    assert chunk_rows(2.0, workers=2) == chunk_rows(1.0)
    assert chunk_rows(1e-6) == 10_000  # a floor, never zero


@pytest.fixture(scope="module")
def bokeh_lake(tmp_path_factory):
    """The project's default real universe (bokeh-sampledata + index) with a few broken rows
    written straight into the lake, so the contract quarantines some (one in the index)."""
    root = tmp_path_factory.mktemp("lake")
    bars_dir = root / "lake" / "bars"
    ingest(default_sources(), bars_dir, root / "lake" / "quarantine")
    bad = []
    for ticker, row, col, value in (("MSFT", 100, "volume", -1.0), ("IBM", 50, "close", -3.0),
                                    (MARKET_TICKER, 300, "high", 0.5)):
        b = read_bars(bars_dir, [ticker])
        b.loc[row, col] = value
        bad.append(b)
    write_bars(pd.concat(bad, ignore_index=True), bars_dir)
    return root


def _in_memory(bars_dir, offline_dir):
    contract = check_bars(read_bars(bars_dir), run_id="r")
    frame = build_features_local(contract.bars)
    write_offline(frame, offline_dir)
    return contract, frame


def test_streaming_offline_tables_equal_the_in_memory_ones(bokeh_lake):
    bars_dir = bokeh_lake / "lake" / "bars"
    want_contract, frame = _in_memory(bars_dir, bokeh_lake / "memory")
    # ~10k bars per chunk: the 5 tickers (~3.4k bars each) land in 2 chunks
    res = build_offline(bars_dir, bokeh_lake / "stream", bokeh_lake / "work",
                        memory_gb=0.02, run_id="r")
    assert res.chunks >= 2 and not (bokeh_lake / "work").exists()
    for name in ("features.parquet", "labels.parquet"):
        want = pq.read_table(bokeh_lake / "memory" / name)
        got = pq.read_table(bokeh_lake / "stream" / name)
        assert got.schema.equals(want.schema, check_metadata=True), name
        assert got.equals(want), name
    pd.testing.assert_frame_equal(pd.read_parquet(bokeh_lake / "stream" / "panel"),
                                  pd.read_parquet(bokeh_lake / "memory" / "panel"),
                                  check_exact=True)
    assert sorted(p.name for p in (bokeh_lake / "stream" / "panel").iterdir()) == \
        sorted(p.name for p in (bokeh_lake / "memory" / "panel").iterdir())
    # the run report's inputs: contract findings and output statistics
    assert res.contract.summary() == want_contract.summary()
    assert want_contract.summary()["rows_quarantined"] == 3
    assert sorted(res.contract.quarantine["reason"]) == \
        sorted(want_contract.quarantine["reason"])
    pd.testing.assert_frame_equal(res.contract.jumps, want_contract.jumps)
    assert res.stats == frame_stats(frame, FEATURE_NAMES, ALL_LABEL_COLUMNS)
    assert res.tickers == sorted(frame["ticker"].unique())


def test_streaming_budget_changes_chunks_not_output(bokeh_lake):
    bars_dir = bokeh_lake / "lake" / "bars"
    a = build_offline(bars_dir, bokeh_lake / "one", bokeh_lake / "w1", memory_gb=8.0,
                      partitioned=False)
    b = build_offline(bars_dir, bokeh_lake / "many", bokeh_lake / "w2", max_chunk_rows=1,
                      partitioned=False)  # a chunk per ticker
    assert a.chunks == 1 and b.chunks == 5
    for name in ("features.parquet", "labels.parquet"):
        assert pq.read_table(bokeh_lake / "one" / name).equals(
            pq.read_table(bokeh_lake / "many" / name))
    assert not (bokeh_lake / "many" / "panel").exists()
