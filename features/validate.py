"""Turn raw source rows into canonical bars; quarantine every row that breaks a rule.

Rules (each quarantined row carries the rule name and a reason naming the values at fault):

- ``schema``: ticker missing, date unparseable, or a price/volume cell not a number;
- ``non_positive_price``: an open/high/low/close that is not > 0;
- ``ohlc_consistency``: high below max(open, close, low) or low above min(open, close, high);
- ``negative_volume``: volume < 0;
- ``bad_adj_close``: an adj_close given but not > 0;
- ``future_date``: a bar dated after the ingestion time;
- ``duplicate``: a second row for the same (ticker, date) — the first is kept;

The feature run re-checks the lake against the pandera contract in ``features.contracts``
(same rules, plus outlier jumps cross-checked against the index, which are flagged, not
dropped) and quarantines with :func:`quarantine_frame` in the same format.

Rows arriving out of date order are not errors: they are sorted, and the count is reported
(``unsorted_rows``) so a provider that shuffles data is visible.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from features.schema import BAR_COLUMNS, PRICE_COLUMNS

# Relative slack for the OHLC checks: providers round prices to cents, so a high printed
# 1e-9 below the close is rounding, not a broken bar.
_OHLC_RTOL = 1e-9


@dataclass
class ValidationResult:
    """Canonical bars that passed, the quarantined rows, and counts for the run summary."""

    bars: pd.DataFrame
    quarantine: pd.DataFrame
    rows_in: int
    unsorted_rows: int = 0
    by_rule: dict[str, int] = field(default_factory=dict)

    @property
    def rows_ok(self) -> int:
        return len(self.bars)

    @property
    def rows_quarantined(self) -> int:
        return len(self.quarantine)

    def summary(self) -> dict:
        return {"rows_in": self.rows_in, "rows_ok": self.rows_ok,
                "rows_quarantined": self.rows_quarantined, "by_rule": dict(self.by_rule),
                "unsorted_rows": self.unsorted_rows}


def validate_raw(raw: pd.DataFrame, *, source: str, run_id: str,
                 now: pd.Timestamp | None = None) -> ValidationResult:
    """Check raw rows and build canonical bars (see module docstring for the rules).

    Args:
        raw: rows with columns ticker, date, open, high, low, close, volume[, adj_close].
        source: the source's name, stored on every bar and quarantine row.
        run_id: identifies this ingestion run in the quarantine.
        now: ingestion time (UTC); bars after it are ``future_date``. Defaults to now.

    Returns:
        A ValidationResult; ``rows_ok + rows_quarantined == rows_in`` always holds.
    """
    now = now or pd.Timestamp.now(tz="UTC")
    raw = raw.reset_index(drop=True)
    n = len(raw)
    reasons: list[tuple[int, str, str]] = []  # (row, rule, reason)
    bad = np.zeros(n, dtype=bool)

    def reject(mask: np.ndarray, rule: str, describe) -> None:
        nonlocal bad
        new = mask & ~bad  # a row is quarantined once, under the first rule it broke
        for i in np.flatnonzero(new):
            reasons.append((int(i), rule, describe(int(i))))
        bad |= new

    ticker = raw["ticker"].astype("string").str.strip().str.upper()
    dates = raw["date"]
    if pd.api.types.is_bool_dtype(dates) or pd.api.types.is_numeric_dtype(dates):
        # numbers and booleans are not dates: pandas would read them as epoch nanoseconds
        # (and a bool column as tz-naive, breaking the comparisons below): quarantine them
        ts = pd.Series(pd.NaT, index=raw.index, dtype="datetime64[ns, UTC]")
    else:
        ts = pd.to_datetime(dates, errors="coerce", utc=True, format="mixed")
    num = {c: pd.to_numeric(raw[c], errors="coerce") for c in PRICE_COLUMNS + ["volume"]}
    has_adj = "adj_close" in raw.columns
    adj = pd.to_numeric(raw["adj_close"], errors="coerce") if has_adj else None

    reject((ticker.isna() | (ticker == "")).to_numpy(), "schema", lambda i: "ticker is empty")
    reject(ts.isna().to_numpy(), "schema",
           lambda i: f"date {raw['date'].iloc[i]!r} is not a date")
    for col, vals in num.items():
        reject(vals.isna().to_numpy(), "schema",
               lambda i, col=col: f"{col} {raw[col].iloc[i]!r} is not a number")
    if has_adj:
        blank = raw["adj_close"].isna() | (raw["adj_close"].astype(str).str.strip() == "")
        reject((adj.isna() & ~blank).to_numpy(), "schema",
               lambda i: f"adj_close {raw['adj_close'].iloc[i]!r} is not a number")

    o, h, lo, c, v = (num[k].to_numpy(float) for k in ("open", "high", "low", "close", "volume"))
    with np.errstate(invalid="ignore"):
        nonpos = (o <= 0) | (h <= 0) | (lo <= 0) | (c <= 0)
        reject(nonpos, "non_positive_price",
               lambda i: f"prices must be > 0: open={o[i]} high={h[i]} low={lo[i]} close={c[i]}")
        top = np.maximum.reduce([o, c, lo])
        bottom = np.minimum.reduce([o, c, h])
        incons = (h < top * (1 - _OHLC_RTOL)) | (lo > bottom * (1 + _OHLC_RTOL))
        reject(incons, "ohlc_consistency",
               lambda i: f"need low <= open,close <= high: open={o[i]} high={h[i]} "
                         f"low={lo[i]} close={c[i]}")
        reject(v < 0, "negative_volume", lambda i: f"volume {v[i]} < 0")
        if has_adj:
            a = adj.to_numpy(float)
            reject(a <= 0, "bad_adj_close", lambda i: f"adj_close {a[i]} must be > 0")
    reject((ts > now).to_numpy(), "future_date",
           lambda i: f"date {ts.iloc[i]} is after ingestion time {now}")

    # Duplicates among the rows still standing: keep the first, quarantine the rest.
    key = pd.DataFrame({"t": ticker, "d": ts})
    dup = key.duplicated(keep="first").to_numpy() & ~bad
    first_idx = {}
    for i in np.flatnonzero(~bad):
        first_idx.setdefault((ticker.iloc[i], ts.iloc[i]), i)
    reject(dup, "duplicate",
           lambda i: f"({ticker.iloc[i]}, {ts.iloc[i].date()}) already given by row "
                     f"{first_idx[(ticker.iloc[i], ts.iloc[i])]}")

    good = ~bad
    close = num["close"][good].to_numpy(float)
    adj_factor = np.ones_like(close)
    if has_adj:
        a = adj[good].to_numpy(float)
        adj_factor = np.where(np.isfinite(a), a / close, 1.0)
    bars = pd.DataFrame({
        "ticker": ticker[good].astype(str).to_numpy(),
        "ts": ts[good].to_numpy(),
        **{k: num[k][good].to_numpy(float) for k in PRICE_COLUMNS + ["volume"]},
        "adj_factor": adj_factor,
        "source": source,
        "ingested_at": now,
    })
    bars["ts"] = pd.to_datetime(bars["ts"], utc=True)
    # Out-of-order rows: count positions where a ticker's date goes backwards, then sort.
    back = bars.groupby("ticker", sort=False)["ts"].diff() < pd.Timedelta(0)
    unsorted_rows = int(back.sum())
    bars = bars.sort_values(["ticker", "ts"], kind="stable").reset_index(drop=True)[BAR_COLUMNS]

    quarantine = quarantine_frame(raw, reasons, source=source, run_id=run_id, now=now)
    by_rule = quarantine["rule"].value_counts().to_dict() if len(quarantine) else {}
    assert len(bars) + len(quarantine) == n, "validation lost rows"
    return ValidationResult(bars=bars, quarantine=quarantine, rows_in=n,
                            unsorted_rows=unsorted_rows, by_rule=by_rule)


def quarantine_frame(raw: pd.DataFrame, reasons, *, source: str, run_id: str,
                     now: pd.Timestamp) -> pd.DataFrame:
    """Quarantine rows (``QUARANTINE_SCHEMA``) from ``(row, rule, reason)`` triples over ``raw``;
    shared by ingestion and the feature run's contract (``features.contracts``)."""
    rows = []
    for i, rule, reason in sorted(reasons):
        record = {k: (None if pd.isna(v) else str(v)) for k, v in raw.iloc[i].items()}
        rows.append({"run_id": run_id, "source": source, "row_number": i, "rule": rule,
                     "reason": reason, "raw": json.dumps(record, default=str),
                     "quarantined_at": now})
    cols = ["run_id", "source", "row_number", "rule", "reason", "raw", "quarantined_at"]
    frame = pd.DataFrame(rows, columns=cols)
    frame["row_number"] = frame["row_number"].astype("int64")
    frame["quarantined_at"] = pd.to_datetime(frame["quarantined_at"], utc=True)
    return frame
