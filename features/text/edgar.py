"""SEC EDGAR: a company's submissions JSON, then each new filing's primary document.

- ``GET {data_url}/submissions/CIK##########.json`` (CIK zero-padded to 10 digits)::

      {"cik": "320193", "name": "Apple Inc.", "tickers": ["AAPL"], "filings": {"recent": {
       "accessionNumber": ["0000320193-24-000006", ...], "filingDate": ["2024-02-02", ...],
       "acceptanceDateTime": ["2024-02-01T18:01:30.000Z", ...], "form": ["8-K", ...],
       "primaryDocument": ["aapl-20240201.htm", ...], "primaryDocDescription": [...]}}}

  ``recent`` is column-wise: parallel lists, one entry per filing.
- ``GET {archive_url}/Archives/edgar/data/<cik>/<accession without dashes>/<document>``: the
  filing's HTML (or text); reduced to plain text here.

The SEC's fair-access policy: a ``User-Agent`` naming the requester with a contact e-mail on
every request, and at most 10 requests a second. The agent comes from
``STOCKRAY_EDGAR_USER_AGENT`` and there is no default: without one nothing is sent.
The publication time is the acceptance time (when the filing became public), not the filing
date: an 8-K accepted at 18:01 New York counts for the next session. The submissions JSON's
``acceptanceDateTime`` ends in ``Z`` but, depending on the filer, is either UTC or the New
York clock with a ``Z`` appended, so it is not trusted on its own: the filing's SGML header
(``<accession>.hdr.sgml``, ``<ACCEPTANCE-DATETIME>YYYYMMDDHHMMSS``, always New York time) is
fetched and used; when it cannot be had, the later of the two readings is used, which may
delay a filing by the UTC offset but never dates it before it was public.
"""

from __future__ import annotations

import json
import logging
import re
from html.parser import HTMLParser

import pandas as pd

from features.providers.http import MalformedResponse, PermanentError, ProviderClient

log = logging.getLogger(__name__)
DEFAULT_FORMS = ("8-K", "10-K", "10-Q")
_RECENT = ("accessionNumber", "acceptanceDateTime", "form", "primaryDocument")
_ACCEPTED = re.compile(r"<ACCEPTANCE-DATETIME>\s*(\d{14})")
_USER_AGENT = re.compile(r"\S+.*\s\S+@\S+\.\S+")  # "Name contact@example.com"


def check_user_agent(agent: str | None) -> str:
    """The agent if it names someone and an e-mail (SEC policy), else ValueError."""
    if not agent or not _USER_AGENT.match(agent.strip()):
        raise ValueError("edgar needs STOCKRAY_EDGAR_USER_AGENT set to a name and a contact "
                         "e-mail, e.g. 'Example Research admin@example.com' (SEC fair access)")
    return agent.strip()


class _Text(HTMLParser):
    """Visible text of an HTML document (scripts, styles and inline XBRL headers skipped)."""

    _SKIP = frozenset({"script", "style", "ix:header", "head"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        if tag in self._SKIP:
            self._skip += 1

    def handle_endtag(self, tag):
        if tag in self._SKIP and self._skip:
            self._skip -= 1

    def handle_data(self, data):
        if not self._skip and data.strip():
            self.parts.append(data.strip())


def html_text(doc: str, limit: int = 20_000) -> str:
    """Plain text of a filing document, first ``limit`` characters (enough for the items of
    an 8-K or the opening of MD&A; the features use the text's sentiment, not all of it)."""
    if "<" not in doc[:2000]:
        return re.sub(r"\s+", " ", doc).strip()[:limit]
    p = _Text()
    p.feed(doc)
    return re.sub(r"\s+", " ", " ".join(p.parts)).strip()[:limit]


def filings(client: ProviderClient, data_url: str, cik: int) -> tuple[str, pd.DataFrame]:
    """Company name and its recent filings (columns of ``_RECENT``)."""
    url = f"{data_url.rstrip('/')}/submissions/CIK{int(cik):010d}.json"
    body = client.get_json(url)
    fil = body.get("filings") if isinstance(body, dict) else None
    recent = fil.get("recent") if isinstance(fil, dict) else None
    if not isinstance(recent, dict) or not all(isinstance(recent.get(k), list) for k in _RECENT):
        raise MalformedResponse(f"edgar: CIK {cik}: no filings.recent columns",
                                json.dumps(body, default=str).encode())
    n = {len(recent[k]) for k in _RECENT}
    if len(n) != 1:
        raise MalformedResponse(f"edgar: CIK {cik}: filings.recent columns differ in length",
                                json.dumps(body, default=str).encode())
    return str(body.get("name") or cik), pd.DataFrame({k: recent[k] for k in _RECENT})


def accepted_at(client: ProviderClient, folder: str, accession: str,
                json_value: str) -> pd.Timestamp | str:
    """Acceptance time in UTC from the SGML header; else the later reading of the JSON value
    (see the module docstring); the raw value when even that is unreadable (validation
    quarantines it)."""
    try:
        header, _ = client.get_text(f"{folder}/{accession}.hdr.sgml")
        m = _ACCEPTED.search(header)
        if m:
            return (pd.Timestamp(m.group(1)).tz_localize("America/New_York").tz_convert("UTC"))
    except PermanentError:
        pass  # no header: fall back to the JSON value
    t = pd.to_datetime(json_value, errors="coerce", utc=True)
    if pd.isna(t):
        return json_value
    as_ny = t.tz_localize(None).tz_localize("America/New_York").tz_convert("UTC")
    return max(t, as_ny)


def fetch_edgar(client: ProviderClient, data_url: str, archive_url: str, cik: int,
                ticker: str, since: pd.Timestamp, forms=DEFAULT_FORMS,
                max_documents: int = 20) -> list[dict]:
    """Raw records of the company's filings of ``forms`` accepted at or after ``since``
    (newest ``max_documents``), each with its primary document's text as the body."""
    name, recent = filings(client, data_url, cik)
    accepted = pd.to_datetime(recent["acceptanceDateTime"], errors="coerce", utc=True)
    keep = recent["form"].isin(forms) & ~(accepted < since)  # unreadable times reach validation
    rows = recent[keep].assign(_t=accepted[keep]).sort_values("_t", ascending=False)
    out = []
    for r in rows.head(max_documents).itertuples(index=False):
        acc = str(r.accessionNumber)
        folder = (f"{archive_url.rstrip('/')}/Archives/edgar/data/{int(cik)}/"
                  f"{acc.replace('-', '')}")
        doc_url = f"{folder}/{r.primaryDocument}"
        try:
            text = html_text(client.get_text(doc_url)[0])
        except PermanentError as e:
            # The filing is a fact (its flag feeds the features) even when its document
            # cannot be read: keep it without a body.
            log.warning("edgar: %s: document not read (%s); kept without text", acc, e)
            text = ""
        out.append({"url": doc_url,
                    "published": accepted_at(client, folder, acc, r.acceptanceDateTime),
                    "headline": f"{name} files {r.form}", "body": text,
                    "source": "SEC EDGAR", "hints": [ticker], "kind": "filing",
                    "form": r.form})
    return out
