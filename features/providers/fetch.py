"""``stockray fetch``: incremental provider fetches into the lake, with a cross-check.

For each ticker the lake already holds, only bars after its last stored session are asked for
(``--since`` overrides). Rows go through ``features.ingest`` — the validation and quarantine
every source gets — so a provider's junk is quarantined with a reason, never stored.

**Degradation.** A provider that is down (retries exhausted, circuit open) or answers garbage
fails only its tickers: the report names them, the lake keeps its last good bars untouched,
and serving goes on with the features it has (their feature timestamps show the staleness;
``last_bar`` in the report says how old each ticker's data is).

**Cross-check.** With ``cross_check=OTHER`` the same tickers and window are also fetched from
another provider and validated (not stored); closes as traded and adjusted closes that differ
by more than ``tolerance`` (relative), or sessions only one side has, are listed in
``<reports>/data_quality/crosscheck-<run_id>.json``.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from features.ingest import IngestReport, ingest, new_run_id
from features.lake import read_bars, write_quarantine
from features.providers import alphavantage, fred
from features.providers.alphavantage import AlphaVantageSource
from features.providers.config import ProviderSettings
from features.providers.generic import HttpSource
from features.providers.http import ClientLimits, ProviderClient, ProviderError
from features.providers.source import ProviderSource
from features.providers.yahoo import YahooSource
from features.settings import Settings
from features.validate import validate_raw

PROVIDERS = ("yahoo", "alphavantage", "http", "fred")
INTRADAY = ("1min", "5min", "15min", "30min", "60min")  # Alpha Vantage's intervals
# Symbols as providers spell them (BRK-B, ^GSPC, EURUSD=X, RDS.A); anything else could
# escape a URL path or a lake partition.
_SYMBOL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.^=\-]{0,19}$|^\^[A-Za-z0-9.=\-]{1,19}$")


def check_config(cfg: FetchConfig) -> None:
    """Raise ValueError naming what is wrong with a fetch request."""
    for name in (cfg.provider, cfg.cross_check):
        if name is not None and name not in PROVIDERS:
            raise ValueError(f"unknown provider {name!r}; choose from {', '.join(PROVIDERS)}")
    if cfg.cross_check in ("fred", cfg.provider):
        raise ValueError(f"--cross-check needs another market provider, not {cfg.cross_check}")
    if cfg.interval != "1d" and cfg.interval not in INTRADAY:
        raise ValueError(f"--interval {cfg.interval!r}: use 1d or one of {', '.join(INTRADAY)}")
    bad = [t for t in cfg.tickers if not _SYMBOL.match(t)]
    if bad:
        raise ValueError(f"not a ticker/series id: {bad}")


@dataclass
class FetchConfig:
    """What ``stockray fetch`` asks for."""

    provider: str
    tickers: tuple[str, ...]  # FRED: series ids
    since: str | None = None  # first session (YYYY-MM-DD); default: after the last stored bar
    interval: str = "1d"  # "1d", or an Alpha Vantage intraday interval ("5min", ...)
    cross_check: str | None = None  # a second provider to compare with (not stored)
    tolerance: float = 0.005  # relative close difference that counts as a disagreement


@dataclass
class FetchReport:
    """What one fetch did: the ingestion report plus provider-specific facts."""

    run_id: str
    provider: str
    since: dict[str, str | None] = field(default_factory=dict)
    refetched: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    last_bar: dict[str, str | None] = field(default_factory=dict)
    http_calls: int = 0
    ingest: dict | None = None
    macro_rows: dict[str, int] = field(default_factory=dict)
    crosscheck: dict | None = None
    crosscheck_file: str | None = None

    @property
    def ok(self) -> bool:
        return not self.failed

    def to_dict(self) -> dict:
        return asdict(self)


def make_client(provider: str, ps: ProviderSettings) -> ProviderClient:
    """The provider's client with its rate limit and the shared retry/breaker settings."""
    rate = {"yahoo": ps.yahoo_rate, "alphavantage": ps.alphavantage_rate, "fred": ps.fred_rate,
            "http": ps.http_source_rate}[provider]
    lim = ClientLimits(rate=rate, timeout_s=ps.timeout_s, retries=ps.retries,
                       backoff_s=ps.backoff_s, backoff_max_s=ps.backoff_max_s,
                       breaker_fail_max=ps.breaker_fail_max, breaker_reset_s=ps.breaker_reset_s)
    headers = {}
    if provider == "http" and ps.http_source_api_key is not None:
        headers["Authorization"] = f"Bearer {ps.http_source_api_key.get_secret_value()}"
    check = alphavantage.check_body if provider == "alphavantage" else None
    return ProviderClient(provider, lim, check_body=check, headers=headers)


def _key(secret, provider: str, env: str) -> str:
    if secret is None:
        raise ValueError(f"{provider} needs an API key: set {env} (it is never logged)")
    return secret.get_secret_value()


def bars_dir_for(settings: Settings, interval: str) -> Path:
    """Daily bars live in the lake's ``bars``; intraday ones in ``bars_<interval>``."""
    return settings.bars_dir if interval == "1d" else settings.lake_dir / f"bars_{interval}"


def stored_range(bars_dir: Path, ticker: str) -> tuple[pd.Timestamp, pd.Timestamp] | None:
    """First and last stored ``ts`` of a ticker (reads only that column), None if none."""
    path = bars_dir / f"ticker={ticker}" / "bars.parquet"
    if not path.exists():
        return None
    ts = pq.read_table(path, columns=["ts"]).column("ts").to_pandas()
    return (ts.min(), ts.max()) if len(ts) else None


def _since(cfg: FetchConfig, last: pd.Timestamp | None, step: pd.Timedelta) -> pd.Timestamp | None:
    if cfg.since:
        return pd.Timestamp(cfg.since, tz="UTC")
    return None if last is None else last + step


def build_sources(provider: str, cfg: FetchConfig, ps: ProviderSettings, client: ProviderClient,
                  bars_dir: Path, quarantine_dir: Path, run_id: str) -> list[ProviderSource]:
    """One source per ticker, each asking only for what the lake lacks."""
    step = pd.Timedelta(days=1) if cfg.interval == "1d" else pd.Timedelta(seconds=1)
    if cfg.interval != "1d" and provider != "alphavantage":
        raise ValueError(f"intraday --interval is supported by alphavantage only, not {provider}")
    out = []
    for t in cfg.tickers:
        rng = stored_range(bars_dir, t)
        since = _since(cfg, rng[1] if rng else None, step)
        common = {"ticker": t, "client": client, "since": since,
                  "history_start": rng[0] if rng else None, "quarantine_dir": quarantine_dir,
                  "run_id": run_id}
        if cfg.interval != "1d":
            common["bar"] = pd.Timedelta(cfg.interval)  # "5min" -> 5 minutes
        if provider == "yahoo":
            out.append(YahooSource(base_url=ps.yahoo_url, **common))
        elif provider == "alphavantage":
            out.append(AlphaVantageSource(
                base_url=ps.alphavantage_url, interval=cfg.interval, **common,
                api_key=_key(ps.alphavantage_api_key, provider, "STOCKRAY_ALPHAVANTAGE_API_KEY")))
        elif provider == "http":
            if not ps.http_source_url:
                raise ValueError("the http provider needs STOCKRAY_HTTP_SOURCE_URL "
                                 "(a URL template with {ticker})")
            out.append(HttpSource(base_url=ps.http_source_url, **common))
        else:
            raise ValueError(f"unknown provider {provider!r}; choose from {PROVIDERS}")
    return out


def run_fetch(cfg: FetchConfig, settings: Settings, ps: ProviderSettings | None = None,
              run_id: str | None = None) -> FetchReport:
    """Fetch ``cfg.tickers`` from ``cfg.provider`` into the lake (see module docstring)."""
    check_config(cfg)
    ps = ps or ProviderSettings()
    settings = settings.resolved()
    run_id = run_id or new_run_id("fetch")
    if cfg.provider == "fred":
        return _run_fred(cfg, settings, ps, run_id)
    bars_dir = bars_dir_for(settings, cfg.interval)
    report = FetchReport(run_id=run_id, provider=cfg.provider)
    with make_client(cfg.provider, ps) as client:
        sources = build_sources(cfg.provider, cfg, ps, client, bars_dir,
                                settings.quarantine_dir, run_id)
        rep: IngestReport = ingest(sources, bars_dir, settings.quarantine_dir, run_id=run_id)
        report.http_calls = client.calls
    report.ingest = rep.to_dict()
    report.failed = dict(rep.failed)
    for s in sources:
        report.since[s.ticker] = None if s.since is None else s.since.strftime("%Y-%m-%d")
        if s.refetched:
            report.refetched.append(s.ticker)
        rng = stored_range(bars_dir, s.ticker)
        report.last_bar[s.ticker] = None if rng is None else str(rng[1])
    if cfg.cross_check:
        report.crosscheck = _cross_check(cfg, ps, sources, bars_dir, settings, run_id)
        out = settings.reports_dir / "data_quality" / f"crosscheck-{run_id}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report.crosscheck, indent=2, default=str))
        report.crosscheck_file = str(out)
    return report


def compare_bars(a: pd.DataFrame, b: pd.DataFrame, tolerance: float) -> dict:
    """Disagreements between two providers' canonical bars on their common sessions.

    Returns:
        ``{"common": n, "only_a": [...], "only_b": [...], "disagreements": [{ticker, ts,
        field, a, b, rel_diff}, ...]}``; fields ``close`` (as traded) and ``adj_close``.
    """
    key = ["ticker", "ts"]
    m = a.merge(b, on=key, how="outer", suffixes=("_a", "_b"), indicator=True)
    def only(side: str) -> list[str]:
        return [f"{r.ticker} {r.ts.date()}" for r in m[m["_merge"] == side].itertuples()]

    out = {"common": int((m["_merge"] == "both").sum()), "only_a": only("left_only"),
           "only_b": only("right_only"), "disagreements": []}
    both = m[m["_merge"] == "both"]
    for fld in ("close", "adj_close"):
        if fld == "close":
            va, vb = both["close_a"], both["close_b"]
        else:
            va = both["close_a"] * both["adj_factor_a"]
            vb = both["close_b"] * both["adj_factor_b"]
        rel = (va - vb).abs() / vb.abs()
        for i in rel[rel > tolerance].index:
            out["disagreements"].append({
                "ticker": both.at[i, "ticker"], "ts": str(both.at[i, "ts"].date()),
                "field": fld, "a": round(float(va[i]), 6), "b": round(float(vb[i]), 6),
                "rel_diff": round(float(rel[i]), 6)})
    return out


def _cross_check(cfg: FetchConfig, ps: ProviderSettings, primary: list[ProviderSource],
                 bars_dir: Path, settings: Settings, run_id: str) -> dict:
    other = cfg.cross_check
    result = {"primary": cfg.provider, "other": other, "tolerance": cfg.tolerance,
              "failed": {}, "tickers": {}}
    with make_client(other, ps) as client:
        sources = build_sources(other, cfg, ps, client, bars_dir, settings.quarantine_dir,
                                f"{run_id}-xcheck")
        for mine, theirs in zip(primary, sources, strict=True):
            theirs.since = mine.since  # the same window, even if the lake moved meanwhile
            try:
                raw = theirs.fetch()
            except (ProviderError, ValueError) as e:
                result["failed"][theirs.ticker] = f"{type(e).__name__}: {e}"
                continue
            checked = validate_raw(raw, source=theirs.name, run_id=f"{run_id}-xcheck")
            try:
                ours = read_bars(bars_dir, [mine.ticker])
            except FileNotFoundError:
                ours = checked.bars.iloc[0:0]
            if mine.since is not None:
                ours = ours[ours["ts"] >= mine.since]
            theirs_bars = checked.bars
            if mine.since is not None:
                theirs_bars = theirs_bars[theirs_bars["ts"] >= mine.since]
            result["tickers"][mine.ticker] = compare_bars(ours, theirs_bars, cfg.tolerance)
    result["disagreements"] = sum(len(t["disagreements"]) for t in result["tickers"].values())
    return result


def _run_fred(cfg: FetchConfig, settings: Settings, ps: ProviderSettings,
              run_id: str) -> FetchReport:
    report = FetchReport(run_id=run_id, provider="fred")
    key = _key(ps.fred_api_key, "fred", "STOCKRAY_FRED_API_KEY")
    macro_dir = settings.lake_dir / "macro"
    with make_client("fred", ps) as client:
        for sid in cfg.tickers:
            stored = fred.read_observations(macro_dir, sid)
            last = stored["date"].max() if len(stored) else None
            since = _since(cfg, last, pd.Timedelta(days=1))
            report.since[sid] = None if since is None else since.strftime("%Y-%m-%d")
            try:
                raw = fred.fetch_observations(client, ps.fred_url, key, sid, since)
            except ProviderError as e:
                report.failed[sid] = f"{type(e).__name__}: {e}"
                body = getattr(e, "body", b"")
                if body:
                    keep = settings.quarantine_dir / "responses" / f"{run_id}-fred-{sid}.json"
                    keep.parent.mkdir(parents=True, exist_ok=True)
                    keep.write_bytes(body)
                continue
            if since is not None:  # the API filters by observation_start; be sure anyway
                day = pd.to_datetime(raw["date"], errors="coerce", utc=True)
                raw = raw[day.isna() | (day >= since)]
            good, bad = fred.first_releases(raw, source=f"fred:{sid}", run_id=run_id)
            if len(good):
                report.macro_rows.update(fred.write_observations(good, macro_dir))
            write_quarantine(bad, settings.quarantine_dir, run_id)
            after = fred.read_observations(macro_dir, sid)
            report.last_bar[sid] = str(after["date"].max()) if len(after) else None
        report.http_calls = client.calls
    return report


def describe(report: FetchReport) -> str:
    """Human summary of a fetch (keys never appear: URLs in errors are redacted)."""
    lines = [f"fetch {report.provider} run {report.run_id}: {report.http_calls} HTTP request(s)"]
    ing = report.ingest or {}
    for name, s in (ing.get("sources") or {}).items():
        rules = ", ".join(f"{k}={v}" for k, v in s["by_rule"].items()) or "none"
        lines.append(f"  {name:<24} {s['rows_in']:>6} rows in, {s['rows_ok']:>6} stored, "
                     f"{s['rows_quarantined']:>4} quarantined (rules: {rules})")
    for sid, n in report.macro_rows.items():
        lines.append(f"  fred:{sid:<19} {n:>6} first releases stored")
    for name, err in report.failed.items():
        lines.append(f"  {name:<24} FAILED: {err}")
    if report.refetched:
        lines.append(f"  split/dividend in new bars: full history refetched for {report.refetched}")
    for t, last in report.last_bar.items():
        lines.append(f"  {t:<24} last stored: {last or 'nothing'} (asked from "
                     f"{report.since.get(t) or 'the beginning'})")
    if report.crosscheck is not None:
        lines.append(f"  cross-check vs {report.crosscheck['other']}: "
                     f"{report.crosscheck['disagreements']} disagreement(s) -> "
                     f"{report.crosscheck_file}")
    return "\n".join(lines)
