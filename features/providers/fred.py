"""FRED ``series/observations`` with first-release dates -> the macro lake.

Wire format (``GET /fred/series/observations?series_id=CPILFESL&file_type=json&api_key=...``)::

    {"realtime_start": "1776-07-04", "realtime_end": "9999-12-31", ...,
     "observations": [{"realtime_start": "2024-01-11", "realtime_end": "2024-02-12",
                       "date": "2023-12-01", "value": "313.209"}, ...]}

``value`` is text, ``"."`` when missing. We ask for **every vintage** (``realtime_start=
1776-07-04``, ``realtime_end=9999-12-31``) and keep, per observation date, the earliest
``realtime_start``: the day the value was first published, and the value as first published.
That is what a model could have known (revisions come later), so the feature join uses it as
``release_ts`` instead of the fixed publication lags ``features.macro`` assumes for the
packaged ``arch`` copies.

Lake layout: ``<lake>/macro/series=<ID>/observations.parquet`` with columns ``series_id, date,
value, release_ts, source, ingested_at``; key (series_id, date). Rows that cannot be used (bad
date, value not a number, ``"."``) go to the quarantine in the format of every other source.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from features.lake import atomic_write_table
from features.macro import MACRO_SERIES
from features.providers.http import MalformedResponse, ProviderClient
from features.validate import quarantine_frame

OBS_SCHEMA = pa.schema([("series_id", pa.string()), ("date", pa.timestamp("ns", tz="UTC")),
                        ("value", pa.float64()), ("release_ts", pa.timestamp("ns", tz="UTC")),
                        ("source", pa.string()), ("ingested_at", pa.timestamp("ns", tz="UTC"))])
#: FRED series behind each ``features.macro`` series (same ids as the packaged arch copies).
SERIES_IDS = {"core_cpi": ("CPILFESL",), "default": ("AAA", "BAA")}


def fetch_observations(client: ProviderClient, base_url: str, api_key: str, series_id: str,
                       since: pd.Timestamp | None = None) -> pd.DataFrame:
    """All vintages of ``series_id`` from ``since`` on: raw text columns ``series_id, date,
    value, realtime_start, realtime_end``."""
    params = {"series_id": series_id, "file_type": "json", "api_key": api_key,
              "realtime_start": "1776-07-04", "realtime_end": "9999-12-31"}
    if since is not None:
        params["observation_start"] = since.strftime("%Y-%m-%d")
    body = client.get_json(f"{base_url.rstrip('/')}/fred/series/observations", params=params)
    obs = body.get("observations") if isinstance(body, dict) else None
    if not isinstance(obs, list) or not all(isinstance(o, dict) for o in obs):
        import json
        raise MalformedResponse(f"fred: {series_id}: no 'observations' list",
                                json.dumps(body, default=str).encode())
    frame = pd.DataFrame.from_records(obs, columns=["date", "value", "realtime_start",
                                                    "realtime_end"]).astype(object)
    frame.insert(0, "series_id", series_id)
    return frame


def first_releases(raw: pd.DataFrame, *, source: str, run_id: str,
                   now: pd.Timestamp | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Validated first releases (``OBS_SCHEMA`` columns) and quarantined rows.

    Each observation date keeps its earliest vintage with a usable value; vintages that are
    unreadable, or whose value is ``"."``, are quarantined with the rule that failed.
    """
    now = now or pd.Timestamp.now(tz="UTC")
    raw = raw.reset_index(drop=True)
    date = pd.to_datetime(raw["date"], errors="coerce", utc=True, format="mixed")
    rel = pd.to_datetime(raw["realtime_start"], errors="coerce", utc=True, format="mixed")
    value = pd.to_numeric(raw["value"], errors="coerce")
    reasons = []
    for i in range(len(raw)):
        if pd.isna(date[i]) or pd.isna(rel[i]):
            reasons.append((i, "schema", (f"date {raw['date'][i]!r} / realtime_start "
                                         f"{raw['realtime_start'][i]!r} is not a date")))
        elif pd.isna(value[i]) or not np.isfinite(value[i]):
            rule = "missing_value" if str(raw["value"][i]).strip() == "." else "schema"
            reasons.append((i, rule, f"value {raw['value'][i]!r} is not a number"))
    bad = np.zeros(len(raw), bool)
    bad[[i for i, *_ in reasons]] = True
    good = pd.DataFrame({"series_id": raw["series_id"].astype(str), "date": date,
                         "value": value, "release_ts": rel})[~bad]
    good = (good.sort_values(["series_id", "date", "release_ts"])
            .drop_duplicates(["series_id", "date"], keep="first").reset_index(drop=True))
    good["source"] = source
    good["ingested_at"] = now
    quarantine = quarantine_frame(raw, reasons, source=source, run_id=run_id, now=now)
    return good[OBS_SCHEMA.names], quarantine


def _path(macro_dir: Path, series_id: str) -> Path:
    if not series_id.isalnum():
        raise ValueError(f"series id {series_id!r} must be alphanumeric")
    return macro_dir / f"series={series_id}" / "observations.parquet"


def write_observations(obs: pd.DataFrame, macro_dir: Path) -> dict[str, int]:
    """Upsert first releases by (series_id, date); a stored first release is never replaced
    by a later vintage (the first publication is the point-in-time fact)."""
    counts = {}
    for sid, new in obs.groupby("series_id"):
        target = _path(macro_dir, str(sid))
        merged = pd.concat([pd.read_parquet(target), new]) if target.exists() else new
        merged = (merged.sort_values(["date", "release_ts"])
                  .drop_duplicates(["series_id", "date"], keep="first").reset_index(drop=True))
        atomic_write_table(pa.Table.from_pandas(merged[OBS_SCHEMA.names], schema=OBS_SCHEMA,
                                                preserve_index=False), target)
        counts[str(sid)] = len(merged)
    return counts


def read_observations(macro_dir: Path, series_id: str) -> pd.DataFrame:
    """Stored first releases of one series (empty frame if none)."""
    target = _path(macro_dir, series_id)
    if not target.exists():
        return pd.DataFrame(columns=OBS_SCHEMA.names)
    return pd.read_parquet(target)


def releases_from_lake(macro_dir: Path) -> dict[str, pd.DataFrame]:
    """``features.macro.macro_releases``-shaped tables built from FRED first releases.

    A feature that needs several series (the default spread needs AAA and BAA) is known once
    the last of them is published: its ``release_ts`` is the latest of their release dates.
    Series with nothing stored are left out (the caller falls back to the packaged data).
    """
    out = {}
    for s in MACRO_SERIES:
        ids = SERIES_IDS.get(s.name, ())
        frames = [read_observations(macro_dir, i) for i in ids]
        if not ids or any(f.empty for f in frames):
            continue
        values = pd.concat([f.set_index("date")["value"].rename(i)
                            for i, f in zip(ids, frames, strict=True)], axis=1).dropna()
        release = pd.concat([f.set_index("date")["release_ts"].rename(i)
                             for i, f in zip(ids, frames, strict=True)], axis=1).max(axis=1)
        values.index = values.index.tz_localize(None)
        feats = s.features(values.sort_index())
        feats.insert(0, "release_ts", release.reindex(feats.index.tz_localize("UTC")).to_numpy())
        out[s.name] = feats.reset_index(drop=True)
    return out


#: What ``stockray features --macro`` accepts.
MACRO_SOURCES = ("arch", "fred", "none")


def resolve_macro(source: str, lake_dir: Path):
    """The ``macro`` argument of the feature pipeline for a ``--macro`` choice.

    ``arch`` (default): the packaged series with fixed publication lags (``features.macro``);
    ``none``: the macro columns are NaN; ``fred`` (opt-in): the lake's FRED first releases,
    each value joined from the day FRED first published it (``realtime_start``), so a revised
    number never leaks into the past. ``fred`` needs every series stored: it raises with the
    fetch command to run rather than mix in packaged values.
    """
    if source == "arch":
        return "arch"
    if source == "none":
        return None
    if source != "fred":
        raise ValueError(f"macro source must be one of {MACRO_SOURCES}, not {source!r}")
    tables = releases_from_lake(Path(lake_dir) / "macro")
    missing = [i for s in MACRO_SERIES if s.name not in tables for i in SERIES_IDS[s.name]]
    if missing:
        raise FileNotFoundError(
            f"--macro fred: no FRED first releases stored under {Path(lake_dir) / 'macro'} for "
            f"{', '.join(missing)}: run `stockray fetch --provider fred --tickers "
            f"{','.join(i for ids in SERIES_IDS.values() for i in ids)}` first")
    return tables
