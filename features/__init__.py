"""From raw sources to the feature store: source adapters (``sources``), validation and
quarantine (``validate``), the Parquet lake (``lake``), data contracts and the per-run
data-quality report (``contracts``), macro series by release date (``macro``), the feature
pipeline, one process or Ray Data (``pipeline``), its generated catalogue (``catalogue``), the
Feast repo and readers (``feature_repo``, ``store``), stockray's batched SQLite online store
for Feast (``online_sqlite``), the optional Redis online store (``redis_server``), the live provider adapters behind ``stockray fetch`` (``providers``), the
memory-bounded offline build (``stream``), and the minute-bar stream: sources (``bar_sources``,
``replay_server``), engine microbatches (``microbatch``), what it writes online
(``intraday``), event rules, the events table and alert sinks (``events``), and the processing
loop (``live``).

May import: ``kernels``. Never trains or serves models.
"""
