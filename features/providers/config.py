"""Provider settings: base URLs, keys and client limits, read from ``STOCKRAY_*`` env vars.

Settings, not config: *where* a provider lives and *which key* to send. Base URLs are
configurable so tests (and mirrors or paid endpoints) can point a provider elsewhere. Keys are
``SecretStr`` with no default and are never logged or written to a report.
"""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class ProviderSettings(BaseSettings):
    """Where each provider lives and how hard we may hit it (env ``STOCKRAY_<FIELD>``)."""

    model_config = SettingsConfigDict(env_prefix="STOCKRAY_", extra="ignore")

    yahoo_url: str = Field("https://query1.finance.yahoo.com",
                           description="Yahoo chart API base (v8/finance/chart/{ticker}).")
    alphavantage_url: str = Field("https://www.alphavantage.co",
                                  description="Alpha Vantage base (/query).")
    alphavantage_api_key: SecretStr | None = Field(None, description="Alpha Vantage API key.")
    fred_url: str = Field("https://api.stlouisfed.org",
                          description="FRED API base (/fred/series/observations).")
    fred_api_key: SecretStr | None = Field(None, description="FRED API key.")
    http_source_url: str | None = Field(
        None, description="Generic source: URL template with {ticker} (and optional {since}) "
                          "answering CSV or JSON records.")
    http_source_api_key: SecretStr | None = Field(
        None, description="Generic source: sent as the Authorization bearer token if set.")

    # Limits per provider, in the `limits` notation ("N/second", "N/minute"). Defaults follow
    # the providers' published free tiers (Alpha Vantage: 5 calls a minute; FRED: 120 a
    # minute); Yahoo publishes none, 1 a second keeps us polite.
    yahoo_rate: str = "1/second"
    alphavantage_rate: str = "5/minute"
    fred_rate: str = "120/minute"
    http_source_rate: str = "5/second"

    timeout_s: float = Field(15.0, gt=0, description="Per-request timeout (connect and read).")
    retries: int = Field(4, ge=0, description="Retries after the first attempt (429/5xx/"
                                              "timeouts/throttle bodies).")
    backoff_s: float = Field(2.0, gt=0, description="Base of the jittered exponential backoff.")
    backoff_max_s: float = Field(60.0, gt=0, description="Cap of one wait (Retry-After too).")
    breaker_fail_max: int = Field(3, ge=1, description="Failed calls (after retries) that open "
                                                       "a provider's circuit.")
    breaker_reset_s: float = Field(60.0, gt=0, description="Seconds an open circuit waits "
                                                           "before one trial call.")
