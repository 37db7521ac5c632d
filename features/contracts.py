"""Data contracts on canonical bars (pandera) and the per-run data-quality report.

``validate_raw`` (``features.validate``) turns provider rows into bars at ingestion. The
contract here is checked again on what the feature run actually reads from the lake, because
the lake can also be written by other tools or older versions:

- ``BARS_CONTRACT`` (pandera, lazy: every failure is collected): positive prices, non-negative
  volume, positive ``adj_factor``, OHLC consistency, non-null ticker/ts, unique (ticker, ts).
  A failing row is quarantined (``lake/quarantine/<run_id>.parquet``, same schema and reason
  style as ingestion) and left out of the features.
- Monotonic dates per ticker: rows out of order are counted (``non_monotonic_ts``) and sorted,
  like ``validate_raw``'s ``unsorted_rows``; not an error.
- Outlier jumps: a stock's daily log return more than ``k`` sigma from zero (sigma: std of its
  previous 60 returns, causal) is **flagged** when the index moved less than ``k_index`` of its
  own sigma that day (idiosyncratic: a bad tick, a missed split, or real news); when the index
  also jumped it is market-wide and only counted. Flags are reported, never dropped.

:func:`data_quality_report` gathers these with engine/timing, gap and NaN statistics into one
JSON document per run (``<data_dir>/reports/data_quality/<run_id>.json`` and ``latest.json``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pandera.pandas as pa

from features.schema import BAR_COLUMNS, PRICE_COLUMNS
from features.sources import MARKET_TICKER
from features.validate import _OHLC_RTOL, quarantine_frame

#: Default outlier rule: |z| >= 6 for the stock while |z| < 3 for the index.
JUMP_K = 6.0
JUMP_K_INDEX = 3.0
JUMP_WINDOW = 60  # returns in the trailing sigma (about three months)
JUMP_MIN_PERIODS = 20


def _ohlc_ok(d: pd.DataFrame) -> pd.Series:
    o, h, lo, c = (d[k].astype(float) for k in PRICE_COLUMNS)
    top = np.maximum(np.maximum(o, c), lo)
    bottom = np.minimum(np.minimum(o, c), h)
    ok = (h >= top * (1 - _OHLC_RTOL)) & (lo <= bottom * (1 + _OHLC_RTOL))
    return ok | ~np.isfinite(o + h + lo + c)  # non-finite prices fail their own check


def _finite_pos(name: str) -> pa.Check:
    return pa.Check(lambda s: np.isfinite(s.astype(float)) & (s > 0), name=name,
                    error=f"{name}: must be a finite number > 0")


BARS_CONTRACT = pa.DataFrameSchema(
    columns={
        "ticker": pa.Column(str, pa.Check.str_length(min_value=1, name="ticker_present"),
                            nullable=False),
        "ts": pa.Column(nullable=False),
        **{c: pa.Column(float, _finite_pos("positive_price"), nullable=False)
           for c in PRICE_COLUMNS},
        "volume": pa.Column(float, pa.Check.ge(0, name="non_negative_volume"), nullable=False),
        "adj_factor": pa.Column(float, _finite_pos("positive_adj_factor"), nullable=False),
    },
    checks=[pa.Check(_ohlc_ok, name="ohlc_consistency",
                     error="need low <= open, close <= high")],
    unique=["ticker", "ts"],
    report_duplicates="exclude_first",
    strict=False,
    coerce=False,
    name="bars",
)


@dataclass
class ContractResult:
    """Bars that honour the contract, quarantined rows, flagged jumps and counts."""

    bars: pd.DataFrame
    quarantine: pd.DataFrame
    jumps: pd.DataFrame
    by_rule: dict[str, int] = field(default_factory=dict)
    non_monotonic_ts: int = 0
    market_wide_jumps: int = 0
    #: rows that passed, when ``bars`` is not kept (the chunked run, ``features.stream``)
    rows_ok: int | None = None

    def summary(self) -> dict:
        ok = len(self.bars) if self.rows_ok is None else self.rows_ok
        return {"rows_in": ok + len(self.quarantine), "rows_ok": ok,
                "rows_quarantined": len(self.quarantine), "by_rule": dict(self.by_rule),
                "non_monotonic_ts": self.non_monotonic_ts,
                "outlier_jumps_flagged": len(self.jumps),
                "outlier_jumps_market_wide": self.market_wide_jumps}


# A row breaking several rules is quarantined under the first of these (as in validate_raw).
_RULE_ORDER = ("schema", "positive_price", "ohlc_consistency", "non_negative_volume",
               "positive_adj_factor", "duplicate")
_COLUMN_RULES = {**{c: "positive_price" for c in PRICE_COLUMNS},
                 "volume": "non_negative_volume", "adj_factor": "positive_adj_factor"}


def _rule_of(row) -> str:
    check, column = str(row["check"]), row["column"]
    if "unique" in check:
        return "duplicate"
    if row["schema_context"] == "DataFrameSchema":
        return "ohlc_consistency"  # the only row-wise dataframe check (reported per column)
    if check.startswith(("not_nullable", "column_in_dataframe", "dtype")) or column == "ticker":
        return "schema"
    return _COLUMN_RULES.get(column, "schema")


def _reason(bars: pd.DataFrame, i: int, rule: str) -> str:
    r = bars.loc[i]
    if rule == "duplicate":
        return f"({r['ticker']}, {r['ts']}) appears more than once; the first row is kept"
    if rule in ("positive_price", "ohlc_consistency"):
        return (f"{rule}: open={r['open']} high={r['high']} low={r['low']} "
                f"close={r['close']}")
    if rule == "non_negative_volume":
        return f"volume {r['volume']} < 0"
    if rule == "positive_adj_factor":
        return f"adj_factor {r['adj_factor']} must be > 0"
    return f"{rule}: " + ", ".join(f"{k}={r[k]}" for k in BAR_COLUMNS if k in r.index)


def check_bars(bars: pd.DataFrame, *, run_id: str, market_ticker: str = MARKET_TICKER,
               k: float = JUMP_K, k_index: float = JUMP_K_INDEX) -> ContractResult:
    """Apply the bars contract; quarantine failing rows, sort, flag idiosyncratic jumps.

    Args:
        bars: canonical bars (stocks and, optionally, the market index).
        run_id: the feature run, stored on quarantine rows.
        market_ticker: the index the jumps are cross-checked against.
        k: a stock's |return| / sigma at or above this is a jump.
        k_index: ...that is flagged only if the index's |z| that day is below this.
    """
    bars = bars.reset_index(drop=True)
    back = bars.groupby("ticker", sort=False)["ts"].diff() < pd.Timedelta(0)
    non_monotonic = int(back.sum())
    bad: dict[int, str] = {}
    try:
        BARS_CONTRACT.validate(bars, lazy=True)
    except pa.errors.SchemaErrors as err:
        fc = err.failure_cases
        for _, row in fc.iterrows():
            idx = row["index"]
            if idx is None or (isinstance(idx, float) and np.isnan(idx)):
                continue  # a whole-column failure (missing column): reported by pandera below
            rule = _rule_of(row)
            prev = bad.get(int(idx))
            if prev is None or _RULE_ORDER.index(rule) < _RULE_ORDER.index(prev):
                bad[int(idx)] = rule
        if fc["index"].isna().all():
            raise
    reasons = [(i, rule, _reason(bars, i, rule)) for i, rule in sorted(bad.items())]
    raw = bars.astype({"ts": str}) if len(reasons) else bars
    quarantine = quarantine_frame(raw, reasons, source="lake", run_id=run_id,
                                  now=pd.Timestamp.now(tz="UTC"))
    keep = np.ones(len(bars), dtype=bool)
    keep[list(bad)] = False
    good = bars[keep].sort_values(["ticker", "ts"], kind="stable").reset_index(drop=True)
    jumps, market_wide = flag_jumps(good, market_ticker=market_ticker, k=k, k_index=k_index)
    by_rule = quarantine["rule"].value_counts().to_dict() if len(quarantine) else {}
    return ContractResult(bars=good, quarantine=quarantine, jumps=jumps, by_rule=by_rule,
                          non_monotonic_ts=non_monotonic, market_wide_jumps=market_wide)


def _zscores(close: pd.Series) -> tuple[pd.Series, pd.Series]:
    r = np.log(close).diff()
    sigma = r.rolling(JUMP_WINDOW, min_periods=JUMP_MIN_PERIODS).std().shift(1)
    return r, r / sigma


def flag_jumps(bars: pd.DataFrame, *, market_ticker: str = MARKET_TICKER, k: float = JUMP_K,
               k_index: float = JUMP_K_INDEX) -> tuple[pd.DataFrame, int]:
    """Idiosyncratic jumps of sorted bars: (flags, count of market-wide jumps not flagged).

    Flags have columns ticker, ts, ret, z, index_ret, index_z, reason.
    """
    adj = bars.assign(_c=bars["close"] * bars["adj_factor"])
    is_mkt = adj["ticker"] == market_ticker
    idx = adj[is_mkt].sort_values("ts")
    index_z = pd.DataFrame({"ts": idx["ts"].to_numpy()})
    if len(idx):
        r, z = _zscores(idx["_c"].reset_index(drop=True))
        index_z["index_ret"], index_z["index_z"] = r.to_numpy(), z.to_numpy()
    else:
        index_z["index_ret"], index_z["index_z"] = np.nan, np.nan
    stocks = adj[~is_mkt]
    g = stocks.groupby("ticker", sort=False)["_c"]
    ret = g.transform(lambda s: np.log(s).diff())
    sigma = ret.groupby(stocks["ticker"]).transform(
        lambda s: s.rolling(JUMP_WINDOW, min_periods=JUMP_MIN_PERIODS).std().shift(1))
    z = ret / sigma
    cand = stocks.loc[z.abs() >= k, ["ticker", "ts"]].assign(ret=ret[z.abs() >= k],
                                                           z=z[z.abs() >= k])
    cols = ["ticker", "ts", "ret", "z", "index_ret", "index_z", "reason"]
    if cand.empty:
        return pd.DataFrame(columns=cols), 0
    cand = cand.merge(index_z, on="ts", how="left")
    market_wide = cand["index_z"].abs() >= k_index
    flagged = cand[~market_wide].copy()
    flagged["reason"] = [
        (f"{t} moved {r:+.1%} ({zz:+.1f} sigma) while the index moved "
         + ("nothing known (no index bar)" if np.isnan(iz) else f"{ir:+.1%} ({iz:+.1f} sigma)"))
        for t, r, zz, ir, iz in zip(flagged["ticker"], flagged["ret"], flagged["z"],
                                    flagged["index_ret"], flagged["index_z"], strict=True)]
    return flagged[cols].reset_index(drop=True), int(market_wide.sum())


def frame_stats(frame: pd.DataFrame, feature_names, label_columns,
                max_examples: int = 20) -> dict:
    """Rows, span, gaps and NaN shares of a feature frame (the report's output side);
    ``features.stream.offline_stats`` computes the same from the written offline tables."""
    gaps = frame["missed_sessions"] if "missed_sessions" in frame else pd.Series(dtype=float)
    long_gaps = frame.loc[gaps > 3, "ticker"]
    n = len(frame)
    return {
        "rows": n, "tickers": int(frame["ticker"].nunique()),
        "first_ts": str(frame["ts"].min()) if n else None,
        "last_ts": str(frame["ts"].max()) if n else None,
        "nan_fraction": {c: round(float(frame[c].isna().mean()), 4) for c in feature_names}
        if n else {},
        "label_fraction": {c: round(float(frame[c].notna().mean()), 4) for c in label_columns}
        if n else {},
        "gap_rows": len(long_gaps),
        "gaps_by_ticker": long_gaps.value_counts().head(max_examples).to_dict(),
        "max_missed_sessions": float(gaps.max()) if gaps.notna().any() else None,
    }


def data_quality_report(*, run_id: str, contract: ContractResult, engine: dict, feature_names,
                        label_columns, frame: pd.DataFrame | None = None,
                        stats: dict | None = None, quarantine_file: str | None = None,
                        max_examples: int = 20) -> dict:
    """One JSON-able document describing a feature run's inputs and outputs.

    The output side comes from ``frame`` (:func:`frame_stats`) or, for a run that never held
    the whole frame, from precomputed ``stats`` (``features.stream.offline_stats``).
    """
    if stats is None:
        if frame is None:
            raise ValueError("data_quality_report needs the feature frame or its stats")
        stats = frame_stats(frame, feature_names, label_columns, max_examples)
    jumps = contract.jumps.head(max_examples).assign(ts=lambda d: d["ts"].astype(str))
    return {
        "run_id": run_id,
        "created_at": pd.Timestamp.now(tz="UTC").isoformat(),
        "engine": engine,
        "contract": {**contract.summary(), "quarantine_file": quarantine_file},
        "outlier_jumps": {"rule": f"|z| >= {JUMP_K} vs own trailing {JUMP_WINDOW}-day sigma "
                                  f"while index |z| < {JUMP_K_INDEX}",
                          "flagged": len(contract.jumps),
                          "market_wide_not_flagged": contract.market_wide_jumps,
                          "examples": json.loads(jumps.to_json(orient="records"))},
        "gaps": {"rows_missing_more_than_3_sessions": stats["gap_rows"],
                 "by_ticker": stats["gaps_by_ticker"],
                 "max_missed_sessions": stats["max_missed_sessions"]},
        "features": {"rows": stats["rows"], "tickers": stats["tickers"],
                     "first_ts": stats["first_ts"], "last_ts": stats["last_ts"],
                     "n_features": len(list(feature_names)),
                     "nan_fraction": stats["nan_fraction"]},
        "labels": stats["label_fraction"],
    }


def write_report(report: dict, reports_dir: Path) -> Path:
    """Write ``data_quality/<run_id>.json`` and ``data_quality/latest.json``; returns the first."""
    d = reports_dir / "data_quality"
    d.mkdir(parents=True, exist_ok=True)
    text = json.dumps(report, indent=2, default=str)
    path = d / f"{report['run_id']}.json"
    path.write_text(text)
    (d / "latest.json").write_text(text)
    return path


def describe_report(report: dict) -> str:
    """A few lines for the terminal."""
    c, j, g, f = report["contract"], report["outlier_jumps"], report["gaps"], report["features"]
    worst = sorted(f["nan_fraction"].items(), key=lambda kv: -kv[1])[:3]
    lines = [
        (f"data quality ({report['run_id']}): engine {report['engine'].get('engine')} "
         f"({report['engine'].get('seconds')}s), {f['rows']} rows, {f['tickers']} tickers"),
        (f"  contract: {c['rows_ok']} ok, {c['rows_quarantined']} quarantined {c['by_rule']}, "
         f"{c['non_monotonic_ts']} out-of-order rows sorted"),
        (f"  outlier jumps: {j['flagged']} flagged (idiosyncratic), "
         f"{j['market_wide_not_flagged']} market-wide not flagged"),
        f"  gaps: {g['rows_missing_more_than_3_sessions']} bars after > 3 missed sessions",
        "  most NaN: " + ", ".join(f"{k} {v:.1%}" for k, v in worst),
    ]
    return "\n".join(lines)
