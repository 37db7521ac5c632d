"""Lake -> features (Ray Data) -> Feast offline store -> online store:
``python -m ray_apps.build_features``. Needs a connected Ray cluster for the Ray Data path."""

from __future__ import annotations

from dataclasses import dataclass

from features.lake import read_bars
from features.pipeline import build_features_local, build_features_ray
from features.settings import Settings
from features.store import apply_repo, materialize, write_offline


@dataclass
class FeaturesConfig:
    engine: str = "ray"  # "ray" (Ray Data groupby/map_groups) or "local" (one process)


@dataclass
class FeaturesResult:
    rows: int
    tickers: list[str]
    first_ts: str
    last_ts: str
    online_tickers: int


def main(cfg: FeaturesConfig, settings: Settings) -> FeaturesResult:
    settings = settings.resolved()
    bars = read_bars(settings.bars_dir)
    if cfg.engine == "ray":
        frame = build_features_ray(bars)
    elif cfg.engine == "local":
        frame = build_features_local(bars)
    else:
        raise ValueError(f"engine must be 'ray' or 'local', not {cfg.engine!r}")
    if frame.empty:
        raise ValueError("no stock bars in the lake (only the market index?): ingest tickers")
    write_offline(frame, settings.offline_dir)
    store = apply_repo(settings.data_dir, settings.offline_dir)
    online = materialize(store, frame)
    return FeaturesResult(rows=len(frame), tickers=sorted(frame["ticker"].unique()),
                          first_ts=str(frame["ts"].min().date()),
                          last_ts=str(frame["ts"].max().date()), online_tickers=online)


if __name__ == "__main__":
    import ray

    ray.init()
    print(main(FeaturesConfig(), Settings()))
