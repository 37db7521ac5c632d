"""One provider, one ticker: the ``features.sources.Source`` every HTTP adapter implements.

A provider source asks only for what the lake lacks (``since`` = the day after the last stored
bar), drops rows before ``since`` the provider sends anyway (Alpha Vantage's compact output is
always 100 days), and, when the new rows carry a split or dividend, fetches the ticker's whole
stored history again: an event changes the adjustment factor of every earlier bar, so the
stored ``adj_factor`` values would otherwise be stale.

Bars of a session that has not finished yet (a daily bar fetched before the close, the
5-minute bar in progress) are dropped: stored once, they would never be asked for again and
would stay wrong. Daily sessions are taken to close at 16:00 New York time (US exchanges),
with 15 minutes for the provider to settle the final print.

A body that is not in the provider's format is kept verbatim under
``quarantine/responses/<run_id>-<provider>-<ticker>.json`` before the error is raised, so the
ingestion report names it and nothing is lost.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from features.providers.http import MalformedResponse, ProviderClient

_EXCHANGE_TZ = "America/New_York"
_SETTLED = pd.Timedelta(hours=16, minutes=15)  # close + settling, after local midnight


def drop_unfinished(frame: pd.DataFrame, now: pd.Timestamp,
                    bar: pd.Timedelta | None = None) -> pd.DataFrame:
    """Rows whose session is over at ``now``: daily (``bar`` None) bars dated D once D 16:15
    New York time has passed; intraday bars starting at t once ``t + bar <= now``. Rows with
    an unreadable date are kept for validation to quarantine."""
    ts = pd.to_datetime(frame["date"], errors="coerce", utc=True, format="mixed")
    if bar is None:
        local_day = ts.dt.tz_localize(None).dt.tz_localize(_EXCHANGE_TZ)
        done = local_day + _SETTLED <= now
    else:
        done = ts + bar <= now
    return frame[ts.isna() | done].reset_index(drop=True)


@dataclass
class ProviderSource:
    """Base of the per-provider sources; subclasses implement ``request`` and ``parse``.

    Args:
        ticker: the provider's symbol (also the lake ticker).
        client: the provider's shared client (rate limit, retries, breaker).
        base_url: the provider's base URL (settings).
        since: first session wanted (None: all history).
        history_start: first stored session, refetched from when an event arrives.
        quarantine_dir: where unreadable bodies are kept.
        run_id: the ingestion run, names kept bodies.
    """

    ticker: str
    client: ProviderClient
    base_url: str
    since: pd.Timestamp | None = None
    history_start: pd.Timestamp | None = None
    quarantine_dir: Path | None = None
    run_id: str = "fetch"
    provider: str = "provider"
    bar: pd.Timedelta | None = None  # None: daily sessions; else the intraday bar length
    refetched: bool = field(default=False, init=False)

    @property
    def name(self) -> str:
        return f"{self.provider}:{self.ticker}"

    def request(self, client: ProviderClient, since: pd.Timestamp | None) -> object:
        raise NotImplementedError

    def parse(self, body: object) -> tuple[pd.DataFrame, set[str]]:
        """Raw rows (``features.sources`` columns) and the sessions (YYYY-MM-DD) with a split
        or dividend."""
        raise NotImplementedError

    def fetch(self) -> pd.DataFrame:
        frame, events = self._get(self.since)
        stored_before = (self.history_start is not None and self.since is not None
                         and self.history_start < self.since)
        # Only an event after the stored bars matters (Alpha Vantage's compact output repeats
        # 100 days, including events the stored adj_factors already reflect).
        new_event = stored_before and any(pd.Timestamp(d, tz="UTC") >= self.since
                                          for d in events)
        if new_event:
            # An event re-bases every earlier adjusted price: rebuild the stored history.
            self.refetched = True
            frame, _ = self._get(self.history_start)
            return frame
        if self.since is not None and len(frame):
            day = pd.to_datetime(frame["date"], errors="coerce", utc=True, format="mixed")
            # Keep unparseable dates: validation must see (and quarantine) them.
            frame = frame[day.isna() | (day >= self.since)].reset_index(drop=True)
        return frame

    def _get(self, since: pd.Timestamp | None) -> tuple[pd.DataFrame, set[str]]:
        body = None
        try:
            body = self.request(self.client, since)
            frame, events = self.parse(body)
            return drop_unfinished(frame, pd.Timestamp.now(tz="UTC"), self.bar), events
        except MalformedResponse as e:
            self._keep(e.body or dump_body(body))
            raise

    def _keep(self, body: bytes | str) -> None:
        if self.quarantine_dir is None:
            return
        name = f"{self.run_id}-{self.provider}-{self.ticker}.json"
        out = self.quarantine_dir / "responses" / name
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(body if isinstance(body, bytes) else body.encode())


def dump_body(body: object) -> bytes:
    """A decoded JSON body back to bytes (for keeping a malformed one)."""
    return json.dumps(body, default=str).encode()
