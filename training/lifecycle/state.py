"""The retrain state file and the data hashes its step keys are made of.

``<data_dir>/retrain/state.json`` records, per step, the key it finished with and its output;
it is replaced atomically so a crash never leaves it half-written.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from features.durable import atomic_write_json
from features.settings import Settings
from features.sources import files_sha256
from training.data import offline_snapshot_hash


def state_path(settings: Settings) -> Path:
    return settings.data_dir / "retrain" / "state.json"


def load_state(settings: Settings) -> dict:
    p = state_path(settings)
    return json.loads(p.read_text()) if p.exists() else {"steps": {}}


def save_state(settings: Settings, state: dict) -> None:
    p = state_path(settings)
    p.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(p, state, indent=2, default=str)  # fsynced: a crash never leaves half


def lake_hash(settings: Settings) -> str:
    """Hash of the lake's bars, one file per ticker."""
    files = sorted(settings.bars_dir.glob("ticker=*/bars.parquet"))
    # names alone collide across tickers (all bars.parquet): hash "ticker=X/bars.parquet"
    h = hashlib.sha256()
    for f in files:
        h.update(f.parent.name.encode())
        h.update(files_sha256([f]).encode())
    return h.hexdigest()


def outputs_intact(step: str, output: dict, settings: Settings) -> bool:
    """A finished data step only counts while what it wrote is still there, unchanged."""
    try:
        if step == "ingest":
            return output.get("lake_sha256") == lake_hash(settings)
        if step == "features":
            return output.get("data_sha256") == offline_snapshot_hash(settings.offline_dir)
    except FileNotFoundError:
        return False
    return True
