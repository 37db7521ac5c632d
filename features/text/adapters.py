"""News providers' wire formats -> raw records (``features.text.records.RAW_COLUMNS``).

Every call goes through a ``features.providers.http.ProviderClient`` (rate limit, retries with
backoff on 429/5xx/timeouts, circuit breaker, keys redacted). A body that is not in the
provider's format raises ``MalformedResponse`` carrying the body, which the fetch keeps under
``quarantine/responses/``; a single bad *article* inside a good body is left for validation to
quarantine.

- **NewsAPI** ``GET /v2/everything?q=..&from=..&to=..&sortBy=publishedAt&pageSize=100&page=N``
  with header ``X-Api-Key``: ``{"status": "ok", "totalResults": n, "articles": [{"source":
  {"id", "name"}, "author", "title", "description", "url", "publishedAt", "content"}]}``;
  errors ``{"status": "error", "code": "rateLimited"|"apiKeyInvalid"|..., "message"}``.
- **GDELT DOC 2.0** ``GET /api/v2/doc/doc?query=..&mode=artlist&format=json&maxrecords=250
  &startdatetime=YYYYMMDDHHMMSS&enddatetime=..``: ``{"articles": [{"url", "title",
  "seendate": "20240102T143000Z", "domain", "language", "sourcecountry"}]}``; no match is
  ``{}``; a bad query is answered with *plain text* and HTTP 200 (malformed here).
- **RSS/Atom** any feed URL, parsed by ``feedparser`` (RSS 0.9x/1.0/2.0, Atom); a body that
  yields no feed and a parse error is malformed.
- **file**: a local CSV or JSON-lines file with ``ts|published, headline, body, url, source
  [, ticker]`` (the shipped synthetic sample, or a user's own archive).
"""

from __future__ import annotations

import calendar
import json
from pathlib import Path

import pandas as pd

from features.providers.http import (
    MalformedResponse,
    PermanentError,
    ProviderClient,
    TransientError,
)

NEWSAPI_PAGE = 100  # the API's maximum pageSize
GDELT_MAX = 250  # the API's maximum maxrecords


def newsapi_check(body: object) -> None:
    """NewsAPI answers errors with a JSON body; ``rateLimited`` is worth a retry."""
    if not isinstance(body, dict):
        raise MalformedResponse("newsapi: body is not a JSON object")
    if body.get("status") == "error":
        code, msg = body.get("code", "?"), str(body.get("message", ""))[:200]
        if code == "rateLimited":
            raise TransientError(f"newsapi: rateLimited: {msg}")
        raise PermanentError(f"newsapi: {code}: {msg}")


def fetch_newsapi(client: ProviderClient, base_url: str, query: str, hint: str | None,
                  since: pd.Timestamp, until: pd.Timestamp, max_pages: int = 5) -> list[dict]:
    """Articles matching ``query`` published in ``[since, until]``, page by page."""
    out: list[dict] = []
    for page in range(1, max_pages + 1):
        body = client.get_json(f"{base_url.rstrip('/')}/v2/everything", params={
            "q": query, "from": since.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "to": until.strftime("%Y-%m-%dT%H:%M:%SZ"), "sortBy": "publishedAt",
            "language": "en", "pageSize": NEWSAPI_PAGE, "page": page})
        arts = body.get("articles")
        if body.get("status") != "ok" or not isinstance(arts, list):
            raise MalformedResponse("newsapi: no 'articles' list in an ok answer",
                                    json.dumps(body, default=str).encode())
        for a in arts:
            if not isinstance(a, dict):
                out.append({"url": None, "published": None, "headline": repr(a)[:200]})
                continue
            src = a.get("source") if isinstance(a.get("source"), dict) else {}
            out.append({"url": a.get("url"), "published": a.get("publishedAt"),
                        "headline": a.get("title"),
                        "body": " ".join(x for x in (a.get("description"), a.get("content"))
                                         if isinstance(x, str)),
                        "source": src.get("name"), "hints": [hint] if hint else [],
                        "kind": "news"})
        total = body.get("totalResults")
        if len(arts) < NEWSAPI_PAGE or not isinstance(total, int) or page * NEWSAPI_PAGE >= total:
            break
    return out


def fetch_gdelt(client: ProviderClient, base_url: str, query: str, hint: str | None,
                since: pd.Timestamp, until: pd.Timestamp) -> list[dict]:
    """Article list for ``query`` seen in ``[since, until]`` (GDELT keeps ~3 months)."""
    fmt = "%Y%m%d%H%M%S"
    url = f"{base_url.rstrip('/')}/api/v2/doc/doc"
    params = {"query": query, "mode": "artlist", "format": "json", "maxrecords": GDELT_MAX,
              "startdatetime": since.strftime(fmt), "enddatetime": until.strftime(fmt),
              "sort": "datedesc"}
    text, _ = client.get_text(url, params=params)
    try:
        body = json.loads(text) if text.strip() else {}
    except ValueError:
        # GDELT explains a bad query in plain text with HTTP 200.
        raise MalformedResponse(f"gdelt: not JSON: {text[:120]!r}", text.encode()) from None
    if not isinstance(body, dict) or not isinstance(body.get("articles", []), list):
        raise MalformedResponse("gdelt: no 'articles' list", text.encode())
    out = []
    for a in body.get("articles", []):
        a = a if isinstance(a, dict) else {}
        seen = a.get("seendate")
        out.append({"url": a.get("url"), "headline": a.get("title"), "body": "",
                    # "20240102T143000Z": the time GDELT first saw the article, UTC.
                    "published": pd.to_datetime(seen, format="%Y%m%dT%H%M%SZ", utc=True,
                                                errors="coerce") if seen else None,
                    "source": a.get("domain"), "hints": [hint] if hint else [],
                    "kind": "news"})
    return out


def parse_feed(text: str, feed_url: str) -> list[dict]:
    """Entries of an RSS/Atom document (``feedparser``)."""
    import feedparser

    doc = feedparser.parse(text)
    if not doc.entries and (doc.bozo or not doc.get("version")):
        err = getattr(doc, "bozo_exception", "no entries and no feed version")
        raise MalformedResponse(f"rss: {feed_url}: not a feed ({err})", text.encode())
    title = doc.feed.get("title") or feed_url
    out = []
    for e in doc.entries:
        when = e.get("published_parsed") or e.get("updated_parsed")
        out.append({"url": e.get("link"), "headline": e.get("title"),
                    "body": e.get("summary") or "",
                    # feedparser normalises every date format to a UTC struct_time.
                    "published": (pd.Timestamp(calendar.timegm(when), unit="s", tz="UTC")
                                  if when else e.get("published") or e.get("updated")),
                    "source": title, "hints": [], "kind": "news"})
    return out


def fetch_rss(client: ProviderClient, feed_url: str) -> list[dict]:
    text, _ = client.get_text(feed_url)
    return parse_feed(text, feed_url)


def read_file(path: Path) -> list[dict]:
    """Records of a local CSV or JSON-lines news file (see the module docstring)."""
    path = Path(path)
    if path.suffix in (".jsonl", ".ndjson", ".json"):
        frame = pd.read_json(path, lines=path.suffix != ".json", dtype=False)
    else:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    if "published" not in frame.columns and "ts" in frame.columns:
        frame = frame.rename(columns={"ts": "published"})
    out = []
    for r in frame.to_dict("records"):
        hint = str(r.get("ticker") or "").strip()
        out.append({"url": r.get("url"), "published": r.get("published"),
                    "headline": r.get("headline"), "body": r.get("body") or "",
                    "source": r.get("source") or path.name,
                    "hints": [t for t in hint.split("|") if t], "kind": r.get("kind") or "news",
                    "form": r.get("form")})
    return out
