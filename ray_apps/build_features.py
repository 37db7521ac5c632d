"""Lake -> contract checks -> features -> Feast offline store -> online store, plus a
data-quality report: ``python -m ray_apps.build_features``.

The run is memory-bounded (``features.stream``): tickers are processed in chunks sized by
``Settings.features_memory_gb`` (``STOCKRAY_FEATURES_MEMORY_GB``, default 2), each chunk's
features go to a parquet part under ``<data_dir>/tmp/<run_id>``, and DuckDB ranks them across
tickers out of core. ``engine="auto"`` (the default) runs the chunks in this process or as Ray
Data tasks by row count and cluster state (``features.pipeline.choose_engine``, measured in
``bench/features.py``); the Ray path needs a connected Ray cluster.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import pandas as pd

from features.contracts import data_quality_report, describe_report, write_report
from features.coverage import summarize_names
from features.lake import count_rows, write_quarantine
from features.pipeline import ALL_LABEL_COLUMNS, FEATURE_NAMES, choose_engine
from features.pipeline_metrics import record_feature_build
from features.providers.fred import resolve_macro
from features.ranges import FEATURE_ABS_MAX
from features.settings import Settings
from features.store import apply_repo, materialize
from features.stream import build_offline


@dataclass
class FeaturesConfig:
    engine: str = "auto"  # "auto" (by row count), "ray" (Ray Data) or "local" (one process)
    online: str = "sqlite"  # Feast online store: "sqlite", "feast-sqlite" or "redis"
    redis_address: str = "127.0.0.1:6379"  # with online="redis": a running redis-server
    # macro family: "arch" (packaged, fixed publication lags), "fred" (the lake's FRED first
    # releases, by realtime_start; opt-in) or "none"
    macro: str = "arch"
    progress: bool = True  # progress bars (Ray Data's own, or tqdm over chunks and parts)
    verbose: bool = True  # print the data-quality summary


@dataclass
class FeaturesResult:
    rows: int
    tickers: list[str]
    first_ts: str
    last_ts: str
    online_tickers: int
    engine: str = "local"
    report_path: str = ""
    quality: dict = field(default_factory=dict)


def _ray_up() -> bool:
    import ray

    return ray.is_initialized()


def main(cfg: FeaturesConfig, settings: Settings) -> FeaturesResult:
    settings = settings.resolved()
    run_id = f"features-{pd.Timestamp.now(tz='UTC'):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
    macro = resolve_macro(cfg.macro, settings.lake_dir)  # fails before any work if missing
    engine = choose_engine(cfg.engine, count_rows(settings.bars_dir), cluster_up=_ray_up())
    t0 = pd.Timestamp.now()
    out = build_offline(settings.bars_dir, settings.offline_dir,
                        settings.data_dir / "tmp" / run_id, engine=engine,
                        memory_gb=settings.features_memory_gb, macro=macro, run_id=run_id,
                        progress=cfg.progress)
    secs = (pd.Timestamp.now() - t0).total_seconds()
    record_feature_build(secs, engine)
    qfile = write_quarantine(out.contract.quarantine, settings.quarantine_dir, run_id)
    stats = out.stats
    store = apply_repo(settings.data_dir, settings.offline_dir, online=cfg.online,
                       redis_address=cfg.redis_address)
    # materialize reads only the tickers and the ts span of its frame: pass just those.
    span = pd.DataFrame({"ticker": [*out.tickers, out.tickers[0]],
                         "ts": [pd.Timestamp(stats["first_ts"])] * len(out.tickers)
                         + [pd.Timestamp(stats["last_ts"])]})
    online = materialize(store, span)
    report = data_quality_report(
        run_id=run_id, contract=out.contract, stats=stats,
        engine={"requested": cfg.engine, "engine": engine, "seconds": round(secs, 3),
                "rows_in": out.contract.summary()["rows_ok"], "online_store": cfg.online,
                "macro": cfg.macro,
                "chunks": out.chunks, "chunk_rows": out.chunk_rows,
                "memory_gb": settings.features_memory_gb, "steps_s": out.seconds},
        feature_names=FEATURE_NAMES, label_columns=ALL_LABEL_COLUMNS,
        quarantine_file=str(qfile) if qfile else None)
    report["market_context"] = out.market_context
    report["out_of_range"] = {"rule": f"infinite or |x| > {FEATURE_ABS_MAX:g} -> NaN",
                              "values_by_feature": out.out_of_range,
                              "values": sum(out.out_of_range.values())}
    report["tickers"] = out.tickers
    path = write_report(report, settings.reports_dir)
    if cfg.verbose:
        print(describe_report(report), flush=True)
        print(describe_context(report), flush=True)
    return FeaturesResult(rows=stats["rows"], tickers=out.tickers,
                          first_ts=str(pd.Timestamp(stats["first_ts"]).date()),
                          last_ts=str(pd.Timestamp(stats["last_ts"]).date()),
                          online_tickers=online, engine=engine, report_path=str(path),
                          quality=report)


def describe_context(report: dict) -> str:
    """Where the market context came from and what the range rule masked (two lines)."""
    mc = report.get("market_context") or {}
    oor = report.get("out_of_range") or {}
    src = mc.get("source", "?")
    if mc.get("weighting"):
        src += f", {mc['weighting']}"
    lines = [f"market context: {src}"]
    by = oor.get("values_by_feature") or {}
    lines.append(f"out-of-range feature values set to NaN: {oor.get('values', 0)}"
                 + (f" in {summarize_names(sorted(by))}" if by else ""))
    return "\n".join(lines)


if __name__ == "__main__":
    import ray

    ray.init()
    print(main(FeaturesConfig(verbose=True), Settings()))
