"""The memory-bounded feature run: lake -> offline store without holding the universe.

1. The lake's stock tickers are cut into chunks of whole tickers (:func:`plan_chunks`) sized by
   the memory budget (:func:`chunk_rows`). Each chunk is read from the lake, checked against
   the bars contract (with the index, for the jump rule), turned into per-ticker features and
   labels (``features.pipeline.features_for_group``) and written as one parquet part under
   ``<work_dir>/parts`` (atomic). ``engine="local"`` runs the chunks one after another in this
   process; ``engine="ray"`` runs them as Ray Data tasks (one block per chunk) over the cluster.
2. DuckDB computes the cross-sectional ranks out of core over the parts (``memory_limit`` and
   ``temp_directory`` under ``work_dir``), with the average-rank semantics of
   ``features.pipeline.add_cross_sectional`` (the reference; tested equal).
3. Parts and ranks are zipped part by part into ``features.parquet``, ``labels.parquet`` and
   the year-partitioned panel: same names, columns, Arrow types, pandas metadata and
   (ticker, ts) row order as ``features.store.write_offline`` of the in-memory frame.

What stays in memory at once: one chunk per worker, one part plus its ranks while writing, and
DuckDB's own ``memory_limit``. The whole-universe objects are small: the index bars, the
quarantine and jump flags, per-part summaries.

With ``engine="ray"``, workers read the lake and write parts themselves: on a multi-node
cluster ``data_dir`` must be shared storage (the ``/data`` volume of ``cluster/*.yaml``).
"""

from __future__ import annotations

import pickle
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from features.contracts import ContractResult, check_bars
from features.lake import atomic_write_table, read_bars, replace_dir
from features.offline_tables import write_tables
from features.pipeline import (
    ALL_LABEL_COLUMNS,
    CROSS_SECTIONAL_BASES,
    FEATURE_NAMES,
    OUTPUT_COLUMNS,
    _macro,
    context_features,
    features_for_group,
    market_features,
)
from features.ranges import mask_out_of_range, merge_counts
from features.sources import MARKET_TICKER
from features.universe_index import derive_index_bars
from features.validate import quarantine_frame

#: Peak RSS per bar of one chunk (read + contract + features + part write), measured on the
#: 2,000 x 10y synthetic lake (bench/features.py): ~1.3 kB/bar; 2x headroom for wider or
#: gappier real data.
BYTES_PER_ROW = 2_600
#: Share of the budget DuckDB may use for the rank step (it runs after the chunks, alone).
DUCKDB_SHARE = 0.5
# Per-ticker features (cross-sectional ranks come later, from these, and are bounded).
_SCALAR_FEATURES = [n for n in FEATURE_NAMES if not n.startswith("cs_rank_")]
_ROW = "_row"  # int64: the part's position in the output order (chunk offset + row)


def chunk_rows(memory_gb: float, workers: int = 1) -> int:
    """Bars per chunk so that ``workers`` chunks in flight fit in ``memory_gb`` (at least
    10,000: below that the per-chunk overhead costs more than the memory it saves)."""
    return max(10_000, int(memory_gb * 1e9 / (BYTES_PER_ROW * max(1, workers))))


def plan_chunks(counts: dict[str, int], max_rows: int) -> list[list[str]]:
    """Consecutive runs of sorted tickers with at most ``max_rows`` bars each (a ticker larger
    than that gets a chunk of its own: tickers are never split)."""
    chunks: list[list[str]] = []
    cur: list[str] = []
    rows = 0
    for t in sorted(counts):
        if cur and rows + counts[t] > max_rows:
            chunks.append(cur)
            cur, rows = [], 0
        cur.append(t)
        rows += counts[t]
    if cur:
        chunks.append(cur)
    return chunks


def lake_counts(bars_dir: Path) -> dict[str, int]:
    """Bars per ticker of the lake, from parquet footers (nothing is read)."""
    if not bars_dir.exists():
        raise FileNotFoundError(f"no lake at {bars_dir}: run `stockray ingest` first")
    return {p.parent.name.split("=", 1)[1]: pq.ParquetFile(p).metadata.num_rows
            for p in sorted(bars_dir.glob("ticker=*/bars.parquet"))}


@dataclass
class Chunk:
    """One unit of work: whole tickers, where their part goes, where their rows start."""

    index: int
    tickers: list[str]
    part: str  # parquet path of the part
    row0: int  # first ``_row`` (offset in input rows, so offsets never collide)
    quarantine_row0: int  # offset added to the chunk's quarantine row numbers


@dataclass
class ChunkResult:
    """What a chunk sends back: counts and the (small) contract findings, never features."""

    index: int
    rows: int  # feature rows written to the part (0: no part)
    rows_in: int
    non_monotonic_ts: int
    market_wide_jumps: int
    quarantine: pd.DataFrame
    jumps: pd.DataFrame
    node_id: str = ""  # the Ray node that ran it (engine="ray"; "" locally)
    out_of_range: dict = field(default_factory=dict)  # feature -> values set to NaN


def run_chunk(chunk: Chunk, bars_dir: Path, index_bars: pd.DataFrame,
              market: pd.DataFrame | None, macro, run_id: str) -> ChunkResult:
    """Read, check and featurize one chunk of tickers; write its part (atomic)."""
    raw = read_bars(bars_dir, chunk.tickers)
    n = len(raw)
    # The index rows go last and are already clean: they add nothing to the quarantine.
    res = check_bars(pd.concat([raw, index_bars], ignore_index=True), run_id=run_id)
    q = res.quarantine
    if len(q):
        q = q.assign(row_number=q["row_number"] + chunk.quarantine_row0)
    stocks = res.bars[res.bars["ticker"] != MARKET_TICKER]
    rows = 0
    out_of_range: dict[str, int] = {}
    if len(stocks):
        context = context_features(stocks["ts"], market, macro)
        parts = [features_for_group(g, context=context)
                 for _, g in stocks.groupby("ticker", sort=True)]
        frame = pd.concat(parts, ignore_index=True)
        out_of_range = mask_out_of_range(frame, _SCALAR_FEATURES)
        frame.insert(0, _ROW, np.arange(chunk.row0, chunk.row0 + len(frame), dtype=np.int64))
        atomic_write_table(pa.Table.from_pandas(frame, preserve_index=False), Path(chunk.part))
        rows = len(frame)
    return ChunkResult(index=chunk.index, rows=rows, rows_in=n,
                       non_monotonic_ts=res.non_monotonic_ts,
                       market_wide_jumps=res.market_wide_jumps, quarantine=q, jumps=res.jumps,
                       out_of_range=out_of_range)


def _ray_chunks(batch: pd.DataFrame, **kwargs) -> pd.DataFrame:
    # One Ray Data row = one chunk descriptor; the result rides back pickled (it is small).
    import ray

    node = ray.get_runtime_context().get_node_id()
    out = []
    for b in batch["chunk"]:
        r = run_chunk(pickle.loads(b), **kwargs)
        r.node_id = node  # where it ran: multi-node runs report their spread
        out.append(pickle.dumps(r))
    return pd.DataFrame({"result": out})


# -- cross-sectional ranks out of core ------------------------------------------------------

def _rank_sql(base: str) -> str:
    # pandas' groupby(ts).rank(method="average") with NaN kept out: NULLs get their own
    # partition and NULL ranks; average rank = (min rank + max rank) / 2, max rank = n + 1 -
    # (rank from the top). Integers until the final division: bit-equal to pandas.
    x = f"_{base}"
    part = f"PARTITION BY ts, {x} IS NULL"
    lo = f"rank() OVER ({part} ORDER BY {x})"
    hi = f"rank() OVER ({part} ORDER BY {x} DESC)"
    n = f"count({x}) OVER (PARTITION BY ts)"
    return (f"CASE WHEN {x} IS NULL THEN NULL WHEN {n} > 1 THEN "
            f"(({lo} + {n} + 1 - {hi}) / 2.0 - 1) / ({n} - 1) ELSE 0.5 END "
            f"AS cs_rank_{base}")


def ranks_query(parts_glob: str) -> str:
    """DuckDB SQL: ``_row`` and every ``cs_rank_<base>`` over the parts, ordered by ``_row``."""
    # NaN (if a writer kept one) counts as missing, as in pandas.
    clean = ", ".join(f"CASE WHEN isnan({b}) THEN NULL ELSE {b} END AS _{b}"
                      for b in CROSS_SECTIONAL_BASES)
    cols = ", ".join(_rank_sql(b) for b in CROSS_SECTIONAL_BASES)
    return (f"SELECT {_ROW}, {cols} FROM (SELECT {_ROW}, ts, {clean} "
            f"FROM read_parquet('{parts_glob}')) ORDER BY {_ROW}")


def duckdb_connect(tmp_dir: Path, memory_gb: float, threads: int | None = None):
    """A DuckDB connection limited to ``memory_gb`` that spills to ``tmp_dir``."""
    import duckdb

    tmp_dir.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    con.execute(f"SET memory_limit = '{max(64, int(memory_gb * 1024))}MB'")
    con.execute(f"SET temp_directory = '{tmp_dir}'")
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    return con


class _RankStream:
    """Takes exactly ``n`` rows at a time from DuckDB's ordered rank stream."""

    def __init__(self, reader: pa.RecordBatchReader):
        self.reader = reader
        self.buf: list[pa.RecordBatch] = []
        self.have = 0

    def take(self, n: int) -> pa.Table:
        while self.have < n:
            b = self.reader.read_next_batch()
            self.buf.append(b)
            self.have += len(b)
        t = pa.Table.from_batches(self.buf)
        head, rest = t.slice(0, n), t.slice(n)
        self.buf, self.have = rest.to_batches(), len(rest)
        return head


def _schemas(sample: pd.DataFrame) -> dict[str, pa.Schema]:
    # The Arrow schemas (pandas metadata included) write_offline gives the in-memory frame.
    feats = sample[["ticker", "ts", *FEATURE_NAMES, "feature_ts"]]
    labs = sample[["ticker", "ts", *ALL_LABEL_COLUMNS]]
    panel = sample.assign(year=sample["ts"].dt.year.astype("int32"))
    return {k: pa.Schema.from_pandas(v, preserve_index=False)
            for k, v in (("features", feats), ("labels", labs), ("panel", panel))}


def write_offline_from_parts(parts: list[Path], offline_dir: Path, con,
                             partitioned: bool = True, progress: bool = False
                             ) -> dict[str, Path]:
    """Cross-sectional ranks (DuckDB) + parts -> the offline tables of ``write_offline``.

    Args:
        parts: part files in output order (each sorted by ticker, ts; tickers ascending).
        offline_dir: ``<data_dir>/offline``.
        con: a :func:`duckdb_connect` connection.
        partitioned: also write ``panel/year=YYYY/``.
        progress: a progress bar over parts.
    """
    offline_dir.mkdir(parents=True, exist_ok=True)
    sample = pq.read_table(parts[0]).slice(0, 1).to_pandas()
    for c in (f"cs_rank_{b}" for b in CROSS_SECTIONAL_BASES):
        sample[c] = np.nan
    schemas = _schemas(sample[OUTPUT_COLUMNS])
    glob = str(parts[0].parent / "*.parquet")
    ranks = _RankStream(con.sql(ranks_query(glob)).to_arrow_reader(1 << 16))
    it = parts
    if progress:
        from tqdm import tqdm

        it = tqdm(parts, desc="offline tables", unit="part", mininterval=1.0)
    panel_dir = offline_dir / "panel"
    ptmp = panel_dir.with_name(f".{panel_dir.name}.tmp")

    def fill(staged: dict[str, Path]) -> None:
        # Both tables are written into one staged generation directory (swapped in as a pair
        # by write_tables); the year panel is staged alongside and swapped after it.
        writers = {k: pq.ParquetWriter(staged[k], schemas[k]) for k in staged}

        def batches():
            for p in it:
                t = pq.read_table(p)
                r = ranks.take(len(t))
                if not r.column(_ROW).equals(t.column(_ROW)):
                    raise RuntimeError(f"rank stream out of step with {p}")
                for c in r.column_names[1:]:
                    t = t.append_column(c, r.column(c))
                for k in ("features", "labels"):
                    writers[k].write_table(t.select(schemas[k].names).cast(schemas[k]))
                if partitioned:
                    year = pc.year(t.column("ts")).cast(pa.int32())
                    yield from t.append_column("year", year).select(schemas["panel"].names) \
                        .cast(schemas["panel"]).to_batches()

        try:
            if partitioned:
                shutil.rmtree(ptmp, ignore_errors=True)
                reader = pa.RecordBatchReader.from_batches(schemas["panel"], batches())
                pads.write_dataset(reader, ptmp, format="parquet", partitioning=["year"],
                                   partitioning_flavor="hive", preserve_order=True,
                                   existing_data_behavior="overwrite_or_ignore")
            else:
                for _ in batches():
                    pass
        finally:
            for w in writers.values():
                w.close()

    paths = write_tables(offline_dir, fill)
    if partitioned:
        replace_dir(ptmp, panel_dir)
        paths["panel"] = panel_dir
    return paths


def offline_stats(con, offline_dir: Path, max_examples: int = 20) -> dict:
    """The frame statistics of ``features.contracts.frame_stats``, computed by DuckDB over the
    written ``features.parquet`` / ``labels.parquet`` (nothing is loaded whole)."""
    f = str(offline_dir / "features.parquet")
    lab = str(offline_dir / "labels.parquet")
    cnt = ", ".join(f'count("{n}")' for n in FEATURE_NAMES)
    row = con.execute(f"SELECT count(*), count(DISTINCT ticker), min(ts), max(ts), "
                      f"count(*) FILTER (WHERE missed_sessions > 3), max(missed_sessions), "
                      f"{cnt} FROM read_parquet('{f}')").fetchone()
    rows, tickers, first, last, n_gaps, max_gap = row[:6]
    by_ticker = con.execute(
        f"SELECT ticker, count(*) AS c FROM read_parquet('{f}') WHERE missed_sessions > 3 "
        f"GROUP BY ticker ORDER BY c DESC, ticker LIMIT {int(max_examples)}").fetchall()
    lcnt = ", ".join(f'count("{c}")' for c in ALL_LABEL_COLUMNS)
    lrow = con.execute(f"SELECT count(*), {lcnt} FROM read_parquet('{lab}')").fetchone()
    return {
        "rows": int(rows), "tickers": int(tickers), "first_ts": _ts_str(first) if rows else None,
        "last_ts": _ts_str(last) if rows else None,
        "nan_fraction": ({n: round(1 - c / rows, 4) for n, c in zip(FEATURE_NAMES, row[6:],
                                                                   strict=True)}
                         if rows else {}),
        "label_fraction": ({c: round(k / lrow[0], 4) for c, k in zip(ALL_LABEL_COLUMNS,
                                                                     lrow[1:], strict=True)}
                           if lrow[0] else {}),
        "gap_rows": int(n_gaps), "gaps_by_ticker": {t: int(c) for t, c in by_ticker},
        "max_missed_sessions": None if max_gap is None else float(max_gap),
    }


def _ts_str(v) -> str:
    t = pd.Timestamp(v)
    return str(t.tz_localize("UTC") if t.tz is None else t.tz_convert("UTC"))


@dataclass
class StreamResult:
    """What :func:`build_offline` produced."""

    paths: dict[str, Path]
    contract: ContractResult  # ``bars`` is empty: only counts, quarantine and flags
    stats: dict  # :func:`offline_stats`
    tickers: list[str]  # stock tickers with feature rows, sorted
    engine: str
    chunks: int
    chunk_rows: int
    seconds: dict = field(default_factory=dict)  # per step
    nodes: dict = field(default_factory=dict)  # Ray node id -> chunks it ran (engine="ray")
    market_context: dict = field(default_factory=dict)  # where the market features came from
    out_of_range: dict = field(default_factory=dict)  # feature -> values set to NaN (ranges)


def _check_index(bars_dir: Path, counts: dict[str, int], run_id: str,
                 derive_index: bool = True):
    """The index bars (checked), their market features and where they came from: the lake's
    index series, else (``derive_index``) one derived from the universe, else none."""
    if MARKET_TICKER in counts:
        res = check_bars(read_bars(bars_dir, [MARKET_TICKER]), run_id=run_id)
        info = {"source": f"index series {MARKET_TICKER} in the lake", "dates": len(res.bars)}
        return res, (market_features(res.bars) if len(res.bars) else None), info
    if derive_index:
        derived, info = derive_index_bars(bars_dir)
        if len(derived):
            res = check_bars(derived, run_id=run_id)
            return res, (market_features(res.bars) if len(res.bars) else None), info
    none = quarantine_frame(pd.DataFrame(), [], source="lake", run_id=run_id,
                            now=pd.Timestamp.now(tz="UTC"))
    return (ContractResult(bars=pd.DataFrame(), quarantine=none, jumps=pd.DataFrame()), None,
            {"source": "none: market features are NaN"})


def build_offline(bars_dir: Path, offline_dir: Path, work_dir: Path, *, engine: str = "local",
                  memory_gb: float = 2.0, macro="arch", run_id: str = "features",
                  partitioned: bool = True, progress: bool = False,
                  keep_work: bool = False, max_chunk_rows: int | None = None,
                  derive_index: bool = True) -> StreamResult:
    """Lake -> contract -> features and labels -> offline tables, in bounded memory.

    Args:
        bars_dir: the lake's ``bars/`` (one partition per ticker).
        offline_dir: ``<data_dir>/offline`` (written as by ``features.store.write_offline``).
        work_dir: scratch space for parts and DuckDB spill files (removed at the end unless
            ``keep_work``); put it under the run's data dir.
        engine: ``"local"`` (chunks in this process) or ``"ray"`` (Ray Data, one task per
            chunk, on the connected cluster).
        memory_gb: budget for the chunks in flight and for DuckDB (see :func:`chunk_rows`).
        macro: as in ``features.pipeline.build_features_local``.
        run_id: stored on quarantine rows.
        partitioned: also write ``panel/year=YYYY/``.
        progress: progress bars (tqdm over chunks and parts; Ray Data's own on Ray).
        keep_work: leave the parts and DuckDB files in ``work_dir`` (debugging).
        max_chunk_rows: bars per chunk instead of the budget's :func:`chunk_rows` (tests).
        derive_index: without an index series in the lake, derive the market context from
            the universe (``features.universe_index``) instead of leaving it NaN.

    Returns:
        Paths, the run's contract findings (quarantine not yet written), output statistics.
    """
    if engine not in ("local", "ray"):
        raise ValueError(f"engine must be 'local' or 'ray', not {engine!r}")
    secs: dict[str, float] = {}
    t = time.perf_counter()
    counts = lake_counts(bars_dir)
    stock_counts = {k: v for k, v in counts.items() if k != MARKET_TICKER}
    if not stock_counts:
        raise ValueError("no stock bars in the lake (only the market index?): ingest tickers")
    idx, market, market_info = _check_index(bars_dir, counts, run_id, derive_index)
    index_bars = idx.bars
    macro = _macro(macro)
    workers = 1
    if engine == "ray":
        import ray

        workers = max(1, int(ray.cluster_resources().get("CPU", 1)))
    max_rows = max_chunk_rows or chunk_rows(memory_gb, workers)
    if engine == "ray" and not max_chunk_rows:  # at least two chunks per CPU, or Ray Data has nothing to spread
        total = sum(stock_counts.values())
        max_rows = max(1, min(max_rows, -(-total // (2 * workers))))
    names = plan_chunks(stock_counts, max_rows)
    parts_dir = work_dir / "parts"
    shutil.rmtree(work_dir, ignore_errors=True)
    parts_dir.mkdir(parents=True)
    chunks, row0 = [], 0
    for i, tickers in enumerate(names):
        chunks.append(Chunk(i, tickers, str(parts_dir / f"part-{i:05d}.parquet"), row0,
                            len(index_bars) + len(idx.quarantine) + row0))
        row0 += sum(stock_counts[t] for t in tickers)
    kw = {"bars_dir": bars_dir, "index_bars": index_bars, "market": market, "macro": macro,
          "run_id": run_id}
    try:
        results = (_run_ray(chunks, kw) if engine == "ray"
                   else _run_local(chunks, kw, progress, sum(stock_counts.values())))
        secs["chunks"] = round(time.perf_counter() - t, 2)
        results.sort(key=lambda r: r.index)
        parts = [Path(c.part) for c, r in zip(chunks, results, strict=True) if r.rows]
        if not parts:
            raise ValueError("every stock bar failed the contract: see the quarantine")
        t = time.perf_counter()
        con = duckdb_connect(work_dir / "duckdb", memory_gb * DUCKDB_SHARE)
        try:
            paths = write_offline_from_parts(parts, offline_dir, con, partitioned, progress)
            secs["ranks_and_write"] = round(time.perf_counter() - t, 2)
            stats = offline_stats(con, offline_dir)
            tickers = [t for (t,) in con.execute(
                f"SELECT DISTINCT ticker FROM read_parquet('{paths['features']}') "
                "ORDER BY ticker").fetchall()]
        finally:
            con.close()
    finally:
        if not keep_work:
            shutil.rmtree(work_dir, ignore_errors=True)
    # a derived index is no input: its rows are not counted as bars checked
    contract = _merge_contracts(idx, results, count_index="derived" not in
                                market_info.get("source", ""))
    nodes: dict[str, int] = {}
    for r in results:
        if r.node_id:
            nodes[r.node_id] = nodes.get(r.node_id, 0) + 1
    return StreamResult(paths=paths, contract=contract, stats=stats, tickers=tickers,
                        engine=engine, chunks=len(chunks), chunk_rows=max_rows,
                        seconds=secs, nodes=nodes, market_context=market_info,
                        out_of_range=merge_counts(r.out_of_range for r in results))


def _run_local(chunks: list[Chunk], kw: dict, progress: bool, total: int
               ) -> list[ChunkResult]:
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total, desc="features", unit="bar", unit_scale=True, mininterval=1.0)
    out = []
    for c in chunks:
        r = run_chunk(c, **kw)
        out.append(r)
        if bar is not None:
            bar.update(r.rows_in)
    if bar is not None:
        bar.close()
    return out


def _run_ray(chunks: list[Chunk], kw: dict) -> list[ChunkResult]:
    import ray.data

    ds = ray.data.from_items([{"chunk": pickle.dumps(c)} for c in chunks],
                             override_num_blocks=len(chunks))
    # batch_size=1: a task per chunk, so each worker holds one chunk of the budget at a time.
    out = ds.map_batches(_ray_chunks, batch_format="pandas", batch_size=1, fn_kwargs=kw)
    return [pickle.loads(r["result"]) for r in out.iter_rows()]


def _merge_contracts(idx: ContractResult, results: list[ChunkResult],
                     count_index: bool = True) -> ContractResult:
    frames = [idx.quarantine, *(r.quarantine for r in results)]
    quarantine = pd.concat([q for q in frames if len(q)] or [idx.quarantine],
                           ignore_index=True)
    jumps = [r.jumps for r in results if len(r.jumps)]
    cols = ["ticker", "ts", "ret", "z", "index_ret", "index_z", "reason"]
    by_rule = quarantine["rule"].value_counts().to_dict() if len(quarantine) else {}
    rows_in = ((len(idx.bars) + len(idx.quarantine)) * count_index
               + sum(r.rows_in for r in results))
    return ContractResult(
        bars=pd.DataFrame(), quarantine=quarantine,
        jumps=pd.concat(jumps, ignore_index=True) if jumps else pd.DataFrame(columns=cols),
        by_rule=by_rule,
        non_monotonic_ts=idx.non_monotonic_ts + sum(r.non_monotonic_ts for r in results),
        market_wide_jumps=sum(r.market_wide_jumps for r in results),
        rows_ok=rows_in - len(quarantine))
