"""Lake -> contract checks -> features -> Feast offline store -> online store, plus a
data-quality report: ``python -m ray_apps.build_features``.

``engine="auto"`` (the default) picks one process or Ray Data by row count and cluster size
(``features.pipeline.choose_engine``, measured in ``bench/features.py``); the Ray path needs a
connected Ray cluster.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import pandas as pd

from features.contracts import check_bars, data_quality_report, describe_report, write_report
from features.lake import read_bars, write_quarantine
from features.pipeline import (
    ALL_LABEL_COLUMNS,
    FEATURE_NAMES,
    build_features_local,
    build_features_ray,
    choose_engine,
)
from features.settings import Settings
from features.store import apply_repo, materialize, write_offline


@dataclass
class FeaturesConfig:
    engine: str = "auto"  # "auto" (by row count), "ray" (Ray Data) or "local" (one process)
    online: str = "sqlite"  # Feast online store: "sqlite" or "redis"
    redis_address: str = "127.0.0.1:6379"  # with online="redis": a running redis-server
    progress: bool = True  # progress bars (Ray Data's own, or tqdm over tickers)
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
    raw = read_bars(settings.bars_dir)
    contract = check_bars(raw, run_id=run_id)
    qfile = write_quarantine(contract.quarantine, settings.quarantine_dir, run_id)
    bars = contract.bars
    engine = choose_engine(cfg.engine, len(bars), cluster_up=_ray_up())
    t0 = pd.Timestamp.now()
    if engine == "ray":
        frame = build_features_ray(bars)
    else:
        frame = build_features_local(bars, progress=cfg.progress)
    secs = (pd.Timestamp.now() - t0).total_seconds()
    if frame.empty:
        raise ValueError("no stock bars in the lake (only the market index?): ingest tickers")
    write_offline(frame, settings.offline_dir)
    store = apply_repo(settings.data_dir, settings.offline_dir, online=cfg.online,
                       redis_address=cfg.redis_address)
    online = materialize(store, frame)
    report = data_quality_report(
        run_id=run_id, contract=contract, frame=frame,
        engine={"requested": cfg.engine, "engine": engine, "seconds": round(secs, 3),
                "rows_in": len(bars), "online_store": cfg.online},
        feature_names=FEATURE_NAMES, label_columns=ALL_LABEL_COLUMNS,
        quarantine_file=str(qfile) if qfile else None)
    path = write_report(report, settings.reports_dir)
    if cfg.verbose:
        print(describe_report(report), flush=True)
    return FeaturesResult(rows=len(frame), tickers=sorted(frame["ticker"].unique()),
                          first_ts=str(frame["ts"].min().date()),
                          last_ts=str(frame["ts"].max().date()), online_tickers=online,
                          engine=engine, report_path=str(path), quality=report)


if __name__ == "__main__":
    import ray

    ray.init()
    print(main(FeaturesConfig(verbose=True), Settings()))
