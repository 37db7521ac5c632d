"""Text path throughput: validating + linking raw records, and building the daily text
features, on synthetic records (100 tickers' worth of headlines over ~1 year by default).

Run: ``python -m bench.text --out bench/results/text.json``. No target is set for these; the
figures say how large a backfill one process handles. Tests never assert them.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd


def _raw(n: int, tickers: list[str], names: list[str], rng) -> pd.DataFrame:
    from features.text.records import raw_frame

    t0 = pd.Timestamp("2023-01-02", tz="UTC")
    minutes = rng.integers(0, 365 * 24 * 60, n)
    pick = rng.integers(0, len(tickers), n)
    return raw_frame([{"url": f"https://bench.example/{i}",
                       "published": (t0 + pd.Timedelta(minutes=int(m))).isoformat(),
                       "headline": f"{names[k]} shares move as analysts weigh results {i}",
                       "body": "", "source": "bench", "hints": []}
                      for i, (m, k) in enumerate(zip(minutes, pick, strict=True))])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("bench/results/text.json"))
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--tickers", type=int, default=100)
    a = ap.parse_args()
    from features.text.daily import text_features
    from features.text.linking import TickerLinker
    from features.text.records import validate_news

    rng = np.random.default_rng(0)
    tickers = [f"T{i:03d}" for i in range(a.tickers)]
    names = [f"Company{i:03d} Holdings" for i in range(a.tickers)]
    linker = TickerLinker(pd.DataFrame({"ticker": tickers, "name": names, "aliases": ""}))
    raw = _raw(a.records, tickers, names, rng)
    t = time.perf_counter()
    checked = validate_news(raw, linker, provider="bench", run_id="bench")
    validate_s = time.perf_counter() - t
    news = checked.news
    p = rng.dirichlet([1, 1, 1], len(news))
    scores = pd.DataFrame({"id": news["id"], "p_negative": p[:, 0], "p_neutral": p[:, 1],
                           "p_positive": p[:, 2]})
    t = time.perf_counter()
    feats = text_features(news, scores)
    features_s = time.perf_counter() - t
    out = {"bench": "text", "cpus": os.cpu_count(), "records": a.records,
           "tickers": a.tickers, "linked_records": int(news["tickers"].map(len).gt(0).sum()),
           "validate_link_s": round(validate_s, 3),
           "validate_link_records_per_s": round(a.records / validate_s),
           "features_s": round(features_s, 3), "feature_rows": len(feats),
           "features_records_per_s": round(len(news) / features_s)}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(out, indent=2))
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
