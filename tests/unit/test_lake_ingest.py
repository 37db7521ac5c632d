"""Lake writes are atomic upserts; ingestion isolates bad files and quarantines bad rows."""

import pandas as pd
import pyarrow.parquet as pq
import pytest

from features import lake
from features.ingest import ingest
from features.sources import FileSource

CSV = """Date,Open,High,Low,Close,Adj Close,Volume
2024-01-02,10,11,9.5,10.5,10.5,1000
2024-01-03,10.5,10.8,10.1,10.2,10.2,900
2024-01-04,10.2,9.0,10.0,10.1,10.1,800
2024-01-05,10.1,10.4,10.0,10.3,10.3,-5
2024-01-08,10.3,10.6,10.2,10.5,10.5,700
"""


def test_user_csv_goes_through_validation_and_quarantine(tmp_path):
    f = tmp_path / "acme.csv"
    f.write_text(CSV)
    rep = ingest([FileSource(f, ticker="ACME")], tmp_path / "bars", tmp_path / "q")
    s = rep.sources["file:acme.csv"]
    assert (s["rows_in"], s["rows_ok"], s["rows_quarantined"]) == (5, 3, 2)
    assert s["by_rule"] == {"ohlc_consistency": 1, "negative_volume": 1}
    stored = lake.read_bars(tmp_path / "bars")
    assert list(stored["ts"].dt.strftime("%m-%d")) == ["01-02", "01-03", "01-08"]
    q = pd.read_parquet(rep.quarantine_file)
    assert sorted(q["row_number"]) == [2, 3]


def test_unreadable_file_is_reported_and_kept_and_others_still_load(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("when,price\n2024-01-02,3\n")
    good = tmp_path / "good.csv"
    good.write_text(CSV)
    rep = ingest([FileSource(bad, ticker="BAD"), FileSource(good, ticker="OK")],
                 tmp_path / "bars", tmp_path / "q")
    assert "missing column" in rep.failed["file:bad.csv"]
    kept = list((tmp_path / "q" / "files").glob("*bad.csv"))
    assert len(kept) == 1 and kept[0].read_text() == bad.read_text()
    assert lake.list_tickers(tmp_path / "bars") == ["OK"]


def test_upsert_replaces_same_key_and_keeps_others(tmp_path):
    def bars(days, close):
        ts = pd.to_datetime([f"2024-01-{d:02d}" for d in days], utc=True)
        return pd.DataFrame({"ticker": "X", "ts": ts, "open": close, "high": close + 1,
                             "low": close - 1, "close": close, "volume": 1.0,
                             "adj_factor": 1.0, "source": "t",
                             "ingested_at": pd.Timestamp("2024-02-01", tz="UTC")})
    lake.write_bars(bars([2, 3], 10.0), tmp_path)
    lake.write_bars(bars([3, 4], 20.0), tmp_path)
    out = lake.read_bars(tmp_path)
    assert list(out["close"]) == [10.0, 20.0, 20.0]


def test_failed_write_leaves_previous_partition_intact(tmp_path, monkeypatch):
    ts = pd.to_datetime(["2024-01-02"], utc=True)
    frame = pd.DataFrame({"ticker": "X", "ts": ts, "open": 1.0, "high": 1.0, "low": 1.0,
                          "close": 1.0, "volume": 1.0, "adj_factor": 1.0, "source": "t",
                          "ingested_at": ts})
    lake.write_bars(frame, tmp_path)
    target = tmp_path / "ticker=X" / "bars.parquet"
    before = target.read_bytes()

    def boom(table, where, **kw):
        with open(where, "wb") as f:
            f.write(b"PAR1 half")  # a partial file, then a crash
        raise OSError("disk full")

    monkeypatch.setattr(pq, "write_table", boom)
    with pytest.raises(OSError):
        lake.write_bars(frame.assign(close=2.0), tmp_path)
    assert target.read_bytes() == before
    assert [p.name for p in target.parent.iterdir()] == ["bars.parquet"]


def test_reader_never_sees_a_mix_of_two_atomic_writes(tmp_path):
    # a path-based pq.read_table opens the file twice (footer, then pages); a replace in
    # between fails with "Page was smaller than expected" — read_table_once pins one file
    import threading

    import numpy as np
    import pyarrow as pa

    from features.lake import atomic_write_table, read_table_once

    path = tmp_path / "state.parquet"
    atomic_write_table(pa.table({"a": np.arange(10)}), path)
    stop = threading.Event()

    def writer():
        i = 0
        while not stop.is_set():
            i += 1
            atomic_write_table(pa.table({"a": np.arange(1000 + (i % 7) * 100) * i}), path)

    t = threading.Thread(target=writer)
    t.start()
    try:
        lengths = {read_table_once(path).num_rows for _ in range(400)}
    finally:
        stop.set()
        t.join()
    assert lengths <= {10} | {1000 + k * 100 for k in range(7)}
