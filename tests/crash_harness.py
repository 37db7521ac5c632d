"""SIGKILL a real writer (tests/crash_writer.py) at random points, then check its store.

``run_kills(store, root, kills)`` starts the writer, waits for ``READY``, kills it with SIGKILL
after a random delay, checks the store (readable, consistent, no completed write lost), and
repeats. ``python -m tests.crash_harness --kills 20 --out crash.json`` runs every store and
writes the survival counts as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.dataset as pads

from tests.crash_writer import DAYS, MODEL, TICKERS, expected_close, offline_rows

REPO = Path(__file__).resolve().parents[1]
# Random kill delay after READY: about two rounds of each writer on a quiet box.
SPANS = {"ingest": 1.0, "features": 1.0, "materialize": 4.0, "export": 2.0, "promote": 4.0,
         "state": 0.2, "features_stream": 3.0}
STARTUP_TIMEOUT = 180.0


class StoreBroken(AssertionError):
    pass


def _writer(store: str, root: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "tests.crash_writer", store, str(root), *extra],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def setup(store: str, root: Path) -> None:
    p = _writer(store, root, "--setup")
    _out, err = p.communicate(timeout=600)
    if p.returncode:
        raise RuntimeError(f"setup of {store} failed:\n{err[-3000:]}")


def kill_once(store: str, root: Path, rng: random.Random) -> int:
    """Start the writer, SIGKILL it at a random point; returns rounds it completed."""
    p = _writer(store, root)
    deadline = time.monotonic() + STARTUP_TIMEOUT
    line = p.stdout.readline()
    while line.strip() != "READY":
        if not line and p.poll() is not None:
            raise RuntimeError(f"{store} writer died before READY:\n{p.stderr.read()[-3000:]}")
        if time.monotonic() > deadline:
            p.kill()
            raise TimeoutError(f"{store} writer not READY in {STARTUP_TIMEOUT}s")
        line = p.stdout.readline()
    time.sleep(rng.uniform(0.0, SPANS[store]))
    if p.poll() is not None:
        raise RuntimeError(f"{store} writer exited on its own:\n{p.stderr.read()[-3000:]}")
    os.kill(p.pid, signal.SIGKILL)
    p.wait(timeout=30)
    rest = p.stdout.read()
    p.stderr.close()
    return sum(1 for ln in rest.splitlines() if ln.startswith("DONE"))


# --- checks: each raises StoreBroken, returns a progress figure (never decreasing) --------------

def check_ingest(root: Path) -> int:
    from features.lake import read_table_once
    from features.schema import BARS_SCHEMA, QUARANTINE_SCHEMA

    bars = root / "lake" / "bars"
    sizes = []
    for t in TICKERS:
        p = bars / f"ticker={t}" / "bars.parquet"
        tab = read_table_once(p)
        if tab.schema.remove_metadata() != BARS_SCHEMA:
            raise StoreBroken(f"{p}: schema {tab.schema}")
        df = tab.to_pandas()
        n = len(df)
        if list(df["ts"]) != list(DAYS[:n]):
            raise StoreBroken(f"{p}: days are not the contiguous first {n}")
        if not np.array_equal(df["close"].to_numpy(), [expected_close(t, d) for d in range(n)]):
            raise StoreBroken(f"{p}: a close differs from what was written")
        sizes.append(n)
    if max(sizes) - min(sizes) > 8:  # one round may have stopped between partitions
        raise StoreBroken(f"partitions drifted apart: {sizes}")
    for q in (root / "lake" / "quarantine").glob("*.parquet"):
        qt = read_table_once(q)
        if qt.schema.remove_metadata() != QUARANTINE_SCHEMA or qt.num_rows < 1:
            raise StoreBroken(f"{q}: unreadable or empty quarantine file")
    return min(sizes)


def check_features(root: Path) -> int:
    from features.lake import read_table_once
    from features.offline_tables import read_pair
    from features.pipeline import ALL_LABEL_COLUMNS, FEATURE_NAMES

    off = root / "offline"
    gens = {}
    for name, cols in (("features", FEATURE_NAMES), ("labels", ALL_LABEL_COLUMNS)):
        df = read_table_once(off / f"{name}.parquet").to_pandas()  # the flat (symlink) paths
        gens[name] = _one_generation(df, cols, f"{name}.parquet")
    # The pair is one atomic generation: after any kill both tables are from the same run,
    # through the flat paths and through the pinned reader alike.
    if gens["features"] != gens["labels"]:
        raise StoreBroken(f"features.parquet / labels.parquet from two generations: {gens}")
    feats, labs = read_pair(off)
    pair = (_one_generation(feats.to_pandas(), FEATURE_NAMES, "pinned features"),
            _one_generation(labs.to_pandas(), ALL_LABEL_COLUMNS, "pinned labels"))
    if pair != (gens["features"], gens["labels"]):
        raise StoreBroken(f"pinned pair {pair} differs from the flat paths {gens}")
    panel = pads.dataset(off / "panel", format="parquet", partitioning="hive").to_table()
    gens["panel"] = _one_generation(panel.to_pandas(), [FEATURE_NAMES[0], ALL_LABEL_COLUMNS[0]],
                                    "panel")
    # The year panel is swapped right after the pair, so a kill between them leaves it one behind.
    if not 0 <= gens["features"] - gens["panel"] <= 1:
        raise StoreBroken(f"panel not the pair's generation or the one before: {gens}")
    return min(gens.values())


def check_features_stream(root: Path) -> int:
    """The streaming writer's pair: both tables hold exactly the same (ticker, ts) keys (one
    generation: each round adds a session, so generations differ in keys), through the flat
    paths and the pinned reader; the year panel holds those keys or the previous round's."""
    from features.lake import read_table_once
    from features.offline_tables import read_pair

    off = root / "offline"
    if not (off / "tables").exists():
        return 0  # killed before the first round finished: nothing published yet
    flat = [read_table_once(off / f"{n}.parquet", columns=["ticker", "ts"]).to_pandas()
            for n in ("features", "labels")]
    pinned = [t.to_pandas() for t in read_pair(off, ["ticker", "ts"], ["ticker", "ts"])]
    keys = [_keys(df) for df in (*flat, *pinned)]
    if any(k != keys[0] for k in keys[1:]):
        raise StoreBroken(f"features/labels keys differ (rows {[len(k) for k in keys]}): "
                          "two generations")
    panel = _keys(pads.dataset(off / "panel", format="parquet", partitioning="hive")
                  .to_table(columns=["ticker", "ts"]).to_pandas())
    if not (panel == keys[0] or panel < keys[0]
            and len(keys[0]) - len(panel) <= len(TICKERS)):
        raise StoreBroken(f"panel ({len(panel)} rows) is not the pair's ({len(keys[0])}) or "
                          "the round before")
    return len(keys[0])


def _keys(df) -> set:
    return set(zip(df["ticker"], df["ts"], strict=True))


def _one_generation(df, cols, what: str) -> int:
    vals = np.unique(df[list(cols)].to_numpy())
    if len(vals) != 1:
        raise StoreBroken(f"{what}: a mix of generations {vals[:5]}")
    gen = int(vals[0])
    if len(df) != offline_rows(gen):
        raise StoreBroken(f"{what}: {len(df)} rows, generation {gen} wrote {offline_rows(gen)}")
    return gen


def check_materialize(root: Path) -> int:
    import pandas as pd

    from features.store import FeastOnlineReader, read_online_generation

    frame = pd.read_parquet(root / "frame.parquet")
    got = FeastOnlineReader(str(root / "feast")).read(list(TICKERS))
    for t in TICKERS:
        last = frame[frame["ticker"] == t]["ts"].max().timestamp()
        if got[t] is None or got[t]["feature_ts"] != last:
            raise StoreBroken(f"online store lost {t}: {got[t] and got[t]['feature_ts']}")
    return int(read_online_generation(root / "feast").get("generation", 0))


def check_export(root: Path) -> int:
    import onnxruntime as ort

    from training.export import ONNX_FILE, read_bundle_meta

    out = root / "bundle"
    meta = read_bundle_meta(out)
    version = str(meta["model_version"]).removesuffix("-meta")
    sess = ort.InferenceSession(str(out / ONNX_FILE), providers=["CPUExecutionProvider"])
    x = np.zeros((2, 6), dtype=np.float32)
    pred = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    if not np.isfinite(pred).all():
        raise StoreBroken("bundle predicts non-finite values")
    return int(version)


def check_promote(root: Path) -> int:
    import mlflow

    from training.export import read_bundle_meta
    from training.registry import HISTORY_TAG, local_bundle_dir, promote

    uri = f"sqlite:///{root / 'mlflow' / 'mlflow.db'}"
    # The next promote run finishes a promotion the kill interrupted; nothing else repairs.
    promote(uri, MODEL, margin=0.0, min_seeds=1, bundle_root=root / "models")
    client = mlflow.MlflowClient(tracking_uri=uri)
    rm = client.get_registered_model(MODEL)
    champ = str(rm.aliases["champion"])
    hist = json.loads(rm.tags.get(HISTORY_TAG, "[]"))
    if not hist or str(hist[-1]) != champ:
        raise StoreBroken(f"history {hist} does not end at the champion v{champ}")
    if str(rm.aliases.get("challenger", "")) == champ:
        raise StoreBroken("champion is still also the challenger after a promote run")
    meta = read_bundle_meta(local_bundle_dir(root / "models", "lgbm", 5))
    if str(meta["model_version"]) != champ:
        raise StoreBroken(f"local bundle is v{meta['model_version']}, champion v{champ}")
    return len(hist)


def check_state(root: Path) -> int:
    p = root / "state" / "state.json"
    if stat.S_IMODE(p.stat().st_mode) != 0o600:
        raise StoreBroken(f"{p} mode {oct(p.stat().st_mode)}")
    return int(json.loads(p.read_text())["i"])


CHECKS = {"ingest": check_ingest, "features": check_features, "materialize": check_materialize,
          "export": check_export, "promote": check_promote, "state": check_state,
          "features_stream": check_features_stream}


def leftovers(root: Path) -> int:
    """Temp files / staged dirs a killed writer left (never read; counted, not an error)."""
    return sum(1 for p in root.rglob(".*") if ".tmp" in p.name or ".new" in p.name
               or p.name.startswith(".bundle."))


def run_kills(store: str, root: Path, kills: int, seed: int = 0) -> dict:
    """Set up, then ``kills`` times: start, SIGKILL at random, check. Raises on a broken store."""
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    setup(store, root)
    t0 = time.monotonic()
    progress, rounds = [], 0
    for k in range(kills):
        rounds += kill_once(store, root, rng)
        try:
            progress.append(CHECKS[store](root))
        except StoreBroken as exc:
            raise StoreBroken(f"{store}: after kill {k + 1}: {exc}") from exc
        if store not in ("promote",) and len(progress) > 1 and progress[-1] < progress[-2]:
            raise StoreBroken(f"{store}: progress went back {progress[-2]} -> {progress[-1]}")
    return {"store": store, "kills_survived": kills, "rounds_completed": rounds,
            "final_progress": progress[-1] if progress else None,
            "leftover_tmp": leftovers(root), "seconds": round(time.monotonic() - t0, 1)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--stores", default=",".join(CHECKS))
    ap.add_argument("--root", type=Path, required=True)
    ap.add_argument("--out", type=Path)
    a = ap.parse_args(argv)
    doc: dict = {"kills_per_store": a.kills, "stores": []}
    for i, s in enumerate(a.stores.split(",")):
        try:
            doc["stores"].append(run_kills(s, a.root / s, a.kills, seed=i))
        except StoreBroken as exc:
            doc["stores"].append({"store": s, "broken": str(exc)})
        if a.out:  # after every store, so a long run that is cut short still reports
            a.out.parent.mkdir(parents=True, exist_ok=True)
            a.out.write_text(json.dumps(doc, indent=1))
    print(json.dumps(doc, indent=1))
    return 1 if any("broken" in r for r in doc["stores"]) else 0


if __name__ == "__main__":
    sys.exit(main())
