"""Point-in-time training-set build: 500 tickers × 10 years (1.26M label rows × 1.26M feature
rows × 46 features), DuckDB ASOF join (``training.data``) vs ``pandas.merge_asof``.

Run: ``python -m bench.pit --out bench/results/pit.json`` (~2 minutes on 2 cores: most of it
is building the features once). Target: ``load_training_frame`` (read both parquet files +
join) in <= 10 s. Tests never assert these numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from bench.features import synthetic_bars


def _pandas_pit(offline: Path) -> pd.DataFrame:
    from features.feature_repo.definitions import FEATURE_TTL
    from features.offline_tables import read_pair
    from features.pipeline import ALL_LABEL_COLUMNS, FEATURE_NAMES

    # One generation of both tables, even if a features run swaps them meanwhile.
    feats_t, labels_t = read_pair(offline, feature_columns=["ticker", "ts", *FEATURE_NAMES])
    feats, labels = feats_t.to_pandas(), labels_t.to_pandas()
    left = labels[["ticker", "ts", *ALL_LABEL_COLUMNS]].sort_values("ts")
    right = feats.rename(columns={"ts": "_ft"}).sort_values("_ft")
    out = pd.merge_asof(left, right, left_on="ts", right_on="_ft", by="ticker",
                        direction="backward", tolerance=pd.Timedelta(FEATURE_TTL))
    return out.drop(columns="_ft").sort_values(["ts", "ticker"]).reset_index(drop=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("bench/results/pit.json"))
    ap.add_argument("--tickers", type=int, default=500)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    from features.pipeline import FEATURE_NAMES, build_features_local
    from features.store import write_offline
    from training.data import load_training_frame

    bars = synthetic_bars(a.tickers, years=10)
    t = time.perf_counter()
    frame = build_features_local(bars)
    build_s = time.perf_counter() - t
    with tempfile.TemporaryDirectory() as d:
        offline = Path(d)
        write_offline(frame, offline, partitioned=False)
        times = {"duckdb_asof": [], "pandas_merge_asof": []}
        for _ in range(a.repeat):
            t = time.perf_counter()
            ours = load_training_frame(offline)
            times["duckdb_asof"].append(time.perf_counter() - t)
            t = time.perf_counter()
            ref = _pandas_pit(offline)
            times["pandas_merge_asof"].append(time.perf_counter() - t)
        equal = bool(np.array_equal(ours[FEATURE_NAMES].to_numpy(), ref[FEATURE_NAMES].to_numpy(),
                                    equal_nan=True))
    best = {k: round(min(v), 3) for k, v in times.items()}
    doc = {"bench": "pit", "cpus": os.cpu_count(), "tickers": a.tickers, "years": 10,
           "label_rows": len(ours), "feature_rows": len(frame), "features": len(FEATURE_NAMES),
           "feature_build_s": round(build_s, 2), "best_s": best,
           "all_s": {k: [round(x, 3) for x in v] for k, v in times.items()},
           "ratio_duckdb_over_pandas": round(best["duckdb_asof"] / best["pandas_merge_asof"], 2),
           "target_s": 10.0, "meets_target": best["duckdb_asof"] <= 10.0,
           "identical_to_pandas": equal}
    print(f"PIT training set, {a.tickers} tickers x 10 years: {len(ours):,} rows x "
          f"{len(FEATURE_NAMES)} features (features built in {build_s:.1f} s)")
    print(f"  load_training_frame (parquet + DuckDB ASOF): {best['duckdb_asof']:.2f} s "
          f"(target <= 10 s: {'met' if doc['meets_target'] else 'MISSED'})")
    print(f"  pandas merge_asof, same inputs:              {best['pandas_merge_asof']:.2f} s "
          f"-> ratio duckdb/pandas {doc['ratio_duckdb_over_pandas']}x; identical: {equal}")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(doc, indent=2))
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
