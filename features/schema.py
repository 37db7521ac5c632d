"""Canonical tables, defined once: the Arrow schemas of bars and quarantine rows."""

from __future__ import annotations

import pyarrow as pa

#: Daily (or intraday) bars. Key (ticker, ts). ``ts`` is the session date at the exchange
#: close for daily bars, UTC. Prices are as traded; ``adj_factor`` turns them into split- and
#: dividend-adjusted prices (``adj_close = close * adj_factor``).
BARS_SCHEMA = pa.schema(
    [
        ("ticker", pa.string()),
        ("ts", pa.timestamp("ns", tz="UTC")),
        ("open", pa.float64()),
        ("high", pa.float64()),
        ("low", pa.float64()),
        ("close", pa.float64()),
        ("volume", pa.float64()),
        ("adj_factor", pa.float64()),
        ("source", pa.string()),
        ("ingested_at", pa.timestamp("ns", tz="UTC")),
    ]
)
BAR_COLUMNS = BARS_SCHEMA.names
PRICE_COLUMNS = ["open", "high", "low", "close"]

#: Every rejected input row: its original values (as text, so nothing is lost to a failed
#: cast), the rule it broke, a human-readable reason, and where it came from.
QUARANTINE_SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),
        ("source", pa.string()),
        ("row_number", pa.int64()),
        ("rule", pa.string()),
        ("reason", pa.string()),
        ("raw", pa.string()),  # the original row as JSON
        ("quarantined_at", pa.timestamp("ns", tz="UTC")),
    ]
)
