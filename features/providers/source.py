"""One provider, one ticker: the ``features.sources.Source`` every HTTP adapter implements.

A provider source asks only for what the lake lacks (``since`` = the day after the last stored
bar), drops rows before ``since`` the provider sends anyway (Alpha Vantage's compact output is
always 100 days), and, when the new rows carry a split or dividend, fetches the ticker's whole
stored history again: an event changes the adjustment factor of every earlier bar, so the
stored ``adj_factor`` values would otherwise be stale.

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
    refetched: bool = field(default=False, init=False)

    @property
    def name(self) -> str:
        return f"{self.provider}:{self.ticker}"

    def request(self, client: ProviderClient, since: pd.Timestamp | None) -> object:
        raise NotImplementedError

    def parse(self, body: object) -> tuple[pd.DataFrame, bool]:
        """Raw rows (``features.sources`` columns) and whether a split/dividend is in them."""
        raise NotImplementedError

    def fetch(self) -> pd.DataFrame:
        frame, events = self._get(self.since)
        if self.since is not None and events:
            # An event re-bases every earlier adjusted price: rebuild the stored history.
            self.refetched = True
            frame, _ = self._get(self.history_start)
            return frame
        if self.since is not None and len(frame):
            day = pd.to_datetime(frame["date"], errors="coerce", utc=True, format="mixed")
            # Keep unparseable dates: validation must see (and quarantine) them.
            frame = frame[day.isna() | (day >= self.since)].reset_index(drop=True)
        return frame

    def _get(self, since: pd.Timestamp | None) -> tuple[pd.DataFrame, bool]:
        body = None
        try:
            body = self.request(self.client, since)
            return self.parse(body)
        except MalformedResponse as e:
            self._keep(e.body or dump_body(body))
            raise

    def _keep(self, body: bytes | str) -> None:
        if self.quarantine_dir is None:
            return
        out = self.quarantine_dir / "responses" / f"{self.run_id}-{self.provider}-{self.ticker}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(body if isinstance(body, bytes) else body.encode())


def dump_body(body: object) -> bytes:
    """A decoded JSON body back to bytes (for keeping a malformed one)."""
    return json.dumps(body, default=str).encode()
