"""``stockray news fetch``: one provider's text for some tickers (or feeds) into the lake.

Per ticker (NewsAPI, GDELT: a query built from the company table's names and symbol; EDGAR:
the ticker's CIK) or per feed URL (RSS/Atom), records go through
``features.text.records.validate_news`` (quarantine with reasons) and are appended to the
``news`` table unless already stored. A provider failure (retries exhausted, circuit open, a
permanent error, a malformed body) fails only that ticker or feed: it is named in the report,
a malformed body is kept under ``quarantine/responses/``, and the rest of the run goes on.

Settings (env ``STOCKRAY_<FIELD>``, :class:`NewsSettings`): base URLs (tests point them at a
replay server), ``STOCKRAY_NEWSAPI_API_KEY`` (never logged), ``STOCKRAY_EDGAR_USER_AGENT``,
and a rate per provider; timeouts, retries and breaker come from ``ProviderSettings``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from features.ingest import new_run_id
from features.lake import write_quarantine
from features.providers.config import ProviderSettings
from features.providers.http import ClientLimits, ProviderClient, ProviderError
from features.settings import Settings
from features.text import adapters, edgar
from features.text.linking import TickerLinker
from features.text.records import raw_frame, validate_news, write_news

NEWS_PROVIDERS = ("newsapi", "gdelt", "edgar", "rss", "file")
SAMPLE_NEWS = Path(__file__).parent / "data" / "sample_news.csv"


class NewsSettings(BaseSettings):
    """Where each text provider lives and how hard we may hit it (env ``STOCKRAY_<FIELD>``)."""

    model_config = SettingsConfigDict(env_prefix="STOCKRAY_", extra="ignore")

    newsapi_url: str = "https://newsapi.org"
    newsapi_api_key: SecretStr | None = Field(None, description="NewsAPI key (X-Api-Key).")
    gdelt_url: str = "https://api.gdeltproject.org"
    edgar_data_url: str = "https://data.sec.gov"
    edgar_archive_url: str = "https://www.sec.gov"
    edgar_user_agent: str | None = Field(
        None, description="'Name contact@example.com', required by the SEC on every request.")
    # NewsAPI's free tier allows 100 requests a day, 1/s keeps bursts polite; GDELT asks for
    # one request every 5 seconds; the SEC allows 10 a second.
    newsapi_rate: str = "1/second"
    gdelt_rate: str = "1 per 5 seconds"
    edgar_rate: str = "10/second"
    rss_rate: str = "1/second"


@dataclass
class NewsFetchConfig:
    """What ``stockray news fetch`` asks for."""

    provider: str
    tickers: tuple[str, ...] = ()
    feeds: tuple[str, ...] = ()  # RSS/Atom URLs
    path: Path | None = None  # the file provider (default: the shipped synthetic sample)
    since: str | None = None  # first publication time (default: 7 days before until)
    until: str | None = None  # last publication time (default: now)
    forms: tuple[str, ...] = edgar.DEFAULT_FORMS
    companies: Path | None = None  # company table for linking (default: shipped)


@dataclass
class NewsFetchReport:
    run_id: str
    provider: str
    http_calls: int = 0
    rows_in: int = 0
    written: int = 0
    already_stored: int = 0
    quarantined: int = 0
    by_rule: dict[str, int] = field(default_factory=dict)
    per_target: dict[str, int] = field(default_factory=dict)  # raw records per ticker/feed
    failed: dict[str, str] = field(default_factory=dict)
    quarantine_file: str | None = None

    @property
    def ok(self) -> bool:
        return not self.failed

    def to_dict(self) -> dict:
        return asdict(self)


def news_client(provider: str, ns: NewsSettings, ps: ProviderSettings) -> ProviderClient:
    """The provider's shared client: its rate, the common retry/breaker settings, headers."""
    rate = {"newsapi": ns.newsapi_rate, "gdelt": ns.gdelt_rate, "edgar": ns.edgar_rate,
            "rss": ns.rss_rate}[provider]
    lim = ClientLimits(rate=rate, timeout_s=ps.timeout_s, retries=ps.retries,
                       backoff_s=ps.backoff_s, backoff_max_s=ps.backoff_max_s,
                       breaker_fail_max=ps.breaker_fail_max, breaker_reset_s=ps.breaker_reset_s)
    headers, check = {}, None
    if provider == "newsapi":
        if ns.newsapi_api_key is None:
            raise ValueError("newsapi needs an API key: set STOCKRAY_NEWSAPI_API_KEY "
                             "(it is never logged)")
        headers["X-Api-Key"] = ns.newsapi_api_key.get_secret_value()
        check = adapters.newsapi_check
    if provider == "edgar":
        headers["User-Agent"] = edgar.check_user_agent(ns.edgar_user_agent)
    return ProviderClient(provider, lim, check_body=check, headers=headers)


def company_query(linker: TickerLinker, ticker: str) -> str:
    """``"Apple Inc." OR Apple OR AAPL``: the names and the symbol as a provider query."""
    row = linker.companies[linker.companies["ticker"].str.upper() == ticker].iloc[0]
    names = [str(row["name"])] + [a for a in str(row.get("aliases") or "").split("|") if a]
    terms = [f'"{n}"' if " " in n else n for n in dict.fromkeys(names + [ticker])]
    return " OR ".join(terms)


def _keep_body(settings: Settings, run_id: str, provider: str, target: str, body: bytes) -> None:
    safe = "".join(c if c.isalnum() else "_" for c in target)[:60]
    out = settings.quarantine_dir / "responses" / f"{run_id}-{provider}-{safe}.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(body)


def _targets(cfg: NewsFetchConfig, linker: TickerLinker) -> list[str]:
    if cfg.provider == "rss":
        if not cfg.feeds:
            raise ValueError("rss needs at least one --feed URL")
        return list(cfg.feeds)
    if cfg.provider == "file":
        return [str(cfg.path or SAMPLE_NEWS)]
    if not cfg.tickers:
        raise ValueError(f"{cfg.provider} needs --tickers")
    unknown = [t for t in cfg.tickers if t not in linker.tickers]
    if unknown:
        raise ValueError(f"tickers {unknown} are not in the company table "
                         f"({', '.join(linker.tickers)}); pass --companies FILE")
    return list(cfg.tickers)


def _records(provider: str, target: str, client: ProviderClient | None, ns: NewsSettings,
             linker: TickerLinker, cfg: NewsFetchConfig, since: pd.Timestamp,
             until: pd.Timestamp) -> list[dict]:
    if provider == "file":
        return adapters.read_file(Path(target))
    if provider == "rss":
        return adapters.fetch_rss(client, target)
    if provider == "newsapi":
        return adapters.fetch_newsapi(client, ns.newsapi_url, company_query(linker, target),
                                      target, since, until)
    if provider == "gdelt":
        return adapters.fetch_gdelt(client, ns.gdelt_url, company_query(linker, target),
                                    target, since, until)
    cik = linker.cik_for(target)
    if cik is None:
        raise ValueError(f"edgar: no CIK for {target} in the company table")
    return edgar.fetch_edgar(client, ns.edgar_data_url, ns.edgar_archive_url, cik, target,
                             since, forms=cfg.forms)


def run_news_fetch(cfg: NewsFetchConfig, settings: Settings, ns: NewsSettings | None = None,
                   ps: ProviderSettings | None = None, run_id: str | None = None,
                   now: pd.Timestamp | None = None) -> NewsFetchReport:
    """Fetch, validate, link and store (see the module docstring)."""
    if cfg.provider not in NEWS_PROVIDERS:
        raise ValueError(f"unknown provider {cfg.provider!r}; choose from "
                         f"{', '.join(NEWS_PROVIDERS)}")
    ns, ps = ns or NewsSettings(), ps or ProviderSettings()
    settings = settings.resolved()
    run_id = run_id or new_run_id(f"news-{cfg.provider}")
    now = now or pd.Timestamp.now(tz="UTC")
    linker = TickerLinker.from_csv(cfg.companies)
    until = pd.Timestamp(cfg.until, tz="UTC") if cfg.until else now
    since = pd.Timestamp(cfg.since, tz="UTC") if cfg.since else until - pd.Timedelta(days=7)
    targets = _targets(cfg, linker)
    report = NewsFetchReport(run_id=run_id, provider=cfg.provider)
    client = None if cfg.provider == "file" else news_client(cfg.provider, ns, ps)
    records: list[dict] = []
    try:
        for target in targets:
            try:
                got = _records(cfg.provider, target, client, ns, linker, cfg, since, until)
            except ProviderError as e:
                report.failed[target] = f"{type(e).__name__}: {e}"
                body = getattr(e, "body", b"")
                if body:
                    _keep_body(settings, run_id, cfg.provider, target, body)
                continue
            report.per_target[target] = len(got)
            records += got
    finally:
        if client is not None:
            report.http_calls = client.calls
            client.close()
    checked = validate_news(raw_frame(records), linker, provider=cfg.provider, run_id=run_id,
                            now=now)
    report.rows_in, report.quarantined = checked.rows_in, len(checked.quarantine)
    report.by_rule = checked.by_rule
    q = write_quarantine(checked.quarantine, settings.quarantine_dir, run_id)
    report.quarantine_file = str(q) if q else None
    w = write_news(checked.news, settings.lake_dir)
    report.written, report.already_stored = w.written, w.already_stored
    return report


def describe(r: NewsFetchReport) -> str:
    lines = [(f"news fetch {r.provider} run {r.run_id}: {r.http_calls} HTTP request(s), "
             f"{r.rows_in} record(s) in, {r.written} stored, {r.already_stored} already "
             f"stored, {r.quarantined} quarantined")]
    if r.by_rule:
        lines.append("  quarantine rules: " + ", ".join(f"{k}={v}" for k, v in r.by_rule.items())
                     + f" -> {r.quarantine_file}")
    for t, n in r.per_target.items():
        lines.append(f"  {t:<40} {n:>5} record(s)")
    for t, err in r.failed.items():
        lines.append(f"  {t:<40} FAILED: {err}")
    return "\n".join(lines)
