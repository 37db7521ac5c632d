"""Live-data provider adapters: one module per provider over one shared HTTP client.

``http`` holds the behaviour every provider shares (rate limit, retries, circuit breaker, keys
from the environment); ``yahoo``, ``alphavantage``, ``generic`` (any HTTP CSV/JSON) turn a
provider's wire format into the raw OHLCV rows of ``features.sources``; ``fred`` stores macro
observations with their first-release date; ``fetch`` runs incremental fetches into the lake
through ``features.ingest`` (same validation and quarantine as every source) and cross-checks
overlapping providers.

May import: ``features``. No Ray, no training.
"""
