"""Online read cost of the text service: a lookup for a model without text (price features
only) vs one for a text model (price features + ``stockray_text_v1`` in the same Feast call,
then the fill rule), interleaved in one run on the same store.

Store: ``--data-dir`` of a run that has both (``stockray up --text``), or, by default, a fresh
temp data dir built here (embedded bars of AAPL, MSFT, IBM, GOOG from 2011-06 -> features ->
Feast; the SYNTHETIC sample news -> word-count scores -> text view). Measured on
``serving.lookup.FeatureLookup`` with its cache off (every call reads the store), one ticker
per call, the two kinds alternating, ``--calls`` each; also the raw reader call alone.

Run: ``python -m bench.text_serving --out data/bench/text_serving.json``. Tests never assert
these figures; the ratio (same run, same load) is the comparable one.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

TICKERS = ("AAPL", "MSFT", "IBM", "GOOG")


def build_store(data_dir: Path):
    """A data dir with price and text features online (no Ray)."""
    from features.settings import Settings
    from ray_apps import build_features, ingest, text_stage

    settings = Settings(data_dir=data_dir).resolved()
    ingest.main(ingest.IngestConfig(tickers=TICKERS, start="2011-06-01"), settings)
    build_features.main(build_features.FeaturesConfig(engine="local", progress=False,
                                                      verbose=False), settings)
    text_stage.run_text_stage(settings)
    return settings


def _pcts(xs: list[float]) -> dict:
    a = np.asarray(xs) * 1e3
    return {"p50_ms": float(np.percentile(a, 50)), "p90_ms": float(np.percentile(a, 90)),
            "p99_ms": float(np.percentile(a, 99)), "n": len(xs)}


def measure(feast_dir: Path, calls: int) -> dict:
    from features.store import FeastOnlineReader
    from features.text.views import TEXT_SERVICE
    from serving.lookup import FeatureLookup

    reader = FeastOnlineReader(str(feast_dir))
    text_reader = reader.with_services([TEXT_SERVICE])
    lookup = FeatureLookup(reader, ttl_s=0)  # no cache: every call reads the store
    kinds = {"price_only": lambda t: lookup.get_many([t]),
             "price_and_text": lambda t: lookup.get_many([t], (TEXT_SERVICE,)),
             "reader_price_only": lambda t: reader.read([t]),
             "reader_price_and_text": lambda t: text_reader.read([t])}
    for fn in kinds.values():  # warm: registry, sqlite pages, first reader build
        for t in TICKERS:
            fn(t)
    times: dict[str, list[float]] = {k: [] for k in kinds}
    for i in range(calls):
        t = TICKERS[i % len(TICKERS)]
        for k, fn in kinds.items():  # interleaved: load changes hit every kind alike
            s = time.perf_counter()
            fn(t)
            times[k].append(time.perf_counter() - s)
    out = {k: _pcts(v) for k, v in times.items()}
    out["ratio_p50_text_vs_price"] = (out["price_and_text"]["p50_ms"]
                                      / out["price_only"]["p50_ms"])
    out["features_read"] = {"price_only": len(reader.names), "price_and_text":
                            len(text_reader.names)}
    return out


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("data/bench/text_serving.json"))
    p.add_argument("--data-dir", type=Path, default=None,
                   help="a data dir with price + text features online (default: build one)")
    p.add_argument("--calls", type=int, default=2000)
    a = p.parse_args(argv)
    t0 = time.perf_counter()
    load_start = os.getloadavg()
    if a.data_dir is None:
        with tempfile.TemporaryDirectory(prefix="bench-text-serving-") as tmp:
            settings = build_store(Path(tmp))
            build_s = time.perf_counter() - t0
            res = measure(settings.feast_dir, a.calls)
    else:
        build_s = 0.0
        res = measure(a.data_dir / "feast", a.calls)
    rep = {"bench": "text_serving", **res, "store_build_s": round(build_s, 1),
           "load_average_at_start": load_start, "load_average_at_end": os.getloadavg(),
           "cpus": os.cpu_count()}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(rep, indent=2))
    print(json.dumps(rep, indent=2))
    return rep


if __name__ == "__main__":
    main()
