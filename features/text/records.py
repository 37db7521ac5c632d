"""The lake's ``news`` table: schema, validation with quarantine, dedupe, atomic writes.

Raw records (what an adapter returns, one row per article or filing; text cells as given)::

    url, published, headline, body, source, hints (list of tickers), kind (news|filing), form

Rules (a rejected row goes to ``quarantine/<run_id>.parquet`` with the rule and a reason, in
the format of every other source):

- ``schema``: no URL and no headline, or a publication time that is not a time;
- ``empty_text``: headline and body both blank after stripping markup whitespace;
- ``future_date``: published after the ingestion time (a clock or time-zone error upstream);
- ``duplicate``: a second row in the batch with the same URL or the same content hash
  (syndicated copies of one story; a filing's hash includes its URL); the first is kept.

Rows already in the lake (same ``id`` or ``content_hash``) are not errors: they are skipped
and counted (``already_stored``), so refetching an overlapping window is idempotent.

Layout: ``<lake>/news/news-<hash>.parquet``, one file per write named by the hash of its ids
and replaced atomically, so a write either lands whole or not at all; readers take the union.
``id`` is the hash of the normalised URL (or of the content when there is none).
Scores live beside it in ``<lake>/news_scores/`` (``features.text.scoring``).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import pandas as pd
import pyarrow as pa

from features.lake import atomic_write_table, read_table_once
from features.text.linking import TickerLinker
from features.validate import quarantine_frame

NEWS_SCHEMA = pa.schema([
    ("id", pa.string()), ("ts", pa.timestamp("ns", tz="UTC")),
    ("tickers", pa.list_(pa.string())), ("headline", pa.string()), ("body", pa.string()),
    ("source", pa.string()), ("url", pa.string()), ("content_hash", pa.string()),
    ("kind", pa.string()), ("form", pa.string()), ("provider", pa.string()),
    ("ingested_at", pa.timestamp("ns", tz="UTC")),
])  # fmt: skip
NEWS_COLUMNS = NEWS_SCHEMA.names
RAW_COLUMNS = ["url", "published", "headline", "body", "source", "hints", "kind", "form"]
_WS = re.compile(r"\s+")


def news_dir(lake_dir: Path) -> Path:
    return lake_dir / "news"


def normalise_url(url: str) -> str:
    """Scheme and host lower-cased, fragment and trailing slash dropped (query kept: some
    sites put the article id there)."""
    p = urlsplit(url.strip())
    return urlunsplit((p.scheme.lower(), p.netloc.lower(), p.path.rstrip("/") or "/",
                       p.query, ""))


def content_hash(headline: str, body: str) -> str:
    """Hash of the case- and whitespace-folded text: syndicated copies share it."""
    text = _WS.sub(" ", f"{headline} {body}".lower()).strip()
    return hashlib.sha1(text.encode()).hexdigest()[:20]


def raw_frame(records: list[dict]) -> pd.DataFrame:
    """Adapter output as the raw frame (missing keys become None)."""
    return pd.DataFrame.from_records(records, columns=RAW_COLUMNS).astype(object)


@dataclass
class NewsValidation:
    news: pd.DataFrame
    quarantine: pd.DataFrame
    rows_in: int
    by_rule: dict[str, int] = field(default_factory=dict)


def _text(v) -> str:
    return "" if v is None or (isinstance(v, float) and np.isnan(v)) else _WS.sub(" ", str(v)).strip()


def validate_news(raw: pd.DataFrame, linker: TickerLinker, *, provider: str, run_id: str,
                  now: pd.Timestamp | None = None) -> NewsValidation:
    """Check raw records, link tickers, build ``NEWS_SCHEMA`` rows (see module docstring).

    Returns:
        Valid rows and quarantined rows; ``len(news) + len(quarantine) == len(raw)``.
    """
    now = now or pd.Timestamp.now(tz="UTC")
    raw = raw.reset_index(drop=True)
    reasons: list[tuple[int, str, str]] = []
    rows, seen_url, seen_hash = [], {}, {}
    ts_all = pd.to_datetime(raw["published"], errors="coerce", utc=True, format="mixed")
    for i, r in enumerate(raw.itertuples(index=False)):
        url, head, body = _text(r.url), _text(r.headline), _text(r.body)
        ts = ts_all.iloc[i]
        if not url and not head:
            reasons.append((i, "schema", "record has neither a url nor a headline"))
            continue
        if pd.isna(ts):
            reasons.append((i, "schema", f"published {r.published!r} is not a time"))
            continue
        if not head and not body:
            reasons.append((i, "empty_text", f"no headline and no body ({url})"))
            continue
        if ts > now:
            reasons.append((i, "future_date", f"published {ts} is after ingestion time {now}"))
            continue
        kind = _text(r.kind) or "news"
        # A filing is one accession, never a syndicated copy: its URL is part of its identity
        # (two 8-Ks whose documents could not be read share the same text).
        chash = content_hash(head, body if kind != "filing" else f"{body} {url}")
        nurl = normalise_url(url) if url else ""
        first = seen_url.get(nurl) if nurl else None
        first = first if first is not None else seen_hash.get(chash)
        if first is not None:
            reasons.append((i, "duplicate", f"same url or text as row {first}"))
            continue
        if nurl:
            seen_url[nurl] = i
        seen_hash[chash] = i
        hints = r.hints if isinstance(r.hints, list | tuple) else []
        rows.append({
            "id": hashlib.sha1((nurl or chash).encode()).hexdigest()[:20], "ts": ts,
            "tickers": linker.link(f"{head}\n{body}", hints), "headline": head, "body": body,
            "source": _text(r.source) or provider, "url": url, "content_hash": chash,
            "kind": kind, "form": _text(r.form) or None,
            "provider": provider, "ingested_at": now})
    news = pd.DataFrame(rows, columns=NEWS_COLUMNS)
    # Quarantine cells are text: hint lists become "A|B".
    flat = raw.assign(hints=[("|".join(map(str, h)) if isinstance(h, list | tuple) else h)
                             for h in raw["hints"]])
    quarantine = quarantine_frame(flat, reasons, source=provider, run_id=run_id, now=now)
    by_rule = quarantine["rule"].value_counts().to_dict() if len(quarantine) else {}
    assert len(news) + len(quarantine) == len(raw), "news validation lost rows"
    return NewsValidation(news, quarantine, len(raw), by_rule)


def read_news(lake_dir: Path, columns: list[str] | None = None) -> pd.DataFrame:
    """Every stored record (one per ``id``), in time order; empty frame without a table."""
    parts = sorted(news_dir(lake_dir).glob("news-*.parquet"))
    if not parts:
        return NEWS_SCHEMA.empty_table().to_pandas()[columns or NEWS_COLUMNS]
    frame = pd.concat([read_table_once(p, columns=columns).to_pandas() for p in parts],
                      ignore_index=True)
    frame = frame.drop_duplicates("id")
    return frame.sort_values([c for c in ("ts", "id") if c in frame.columns]).reset_index(
        drop=True)


@dataclass
class NewsWrite:
    written: int = 0
    already_stored: int = 0
    path: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def write_news(news: pd.DataFrame, lake_dir: Path) -> NewsWrite:
    """Append records not yet stored (by ``id`` or ``content_hash``) as one atomic file."""
    if news.empty:
        return NewsWrite()
    stored = read_news(lake_dir, columns=["id", "content_hash"])
    old = stored["id"].isin(news["id"]) | stored["content_hash"].isin(news["content_hash"])
    known_ids, known_hash = set(stored["id"][old]), set(stored["content_hash"][old])
    new = news[~news["id"].isin(known_ids) & ~news["content_hash"].isin(known_hash)]
    out = NewsWrite(already_stored=len(news) - len(new))
    if new.empty:
        return out
    key = hashlib.sha1("".join(sorted(new["id"])).encode()).hexdigest()[:20]
    path = news_dir(lake_dir) / f"news-{key}.parquet"
    table = pa.Table.from_pandas(new[NEWS_COLUMNS].reset_index(drop=True), schema=NEWS_SCHEMA,
                                 preserve_index=False)
    atomic_write_table(table, path)
    out.written, out.path = len(new), str(path)
    return out
