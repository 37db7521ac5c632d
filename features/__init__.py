"""From raw sources to the feature store: source adapters (``sources``), validation and
quarantine (``validate``), the Parquet lake (``lake``), data contracts and the per-run
data-quality report (``contracts``), macro series by release date (``macro``), the feature
pipeline, one process or Ray Data (``pipeline``), its generated catalogue (``catalogue``), the
Feast repo and readers (``feature_repo``, ``store``), the optional Redis online store
(``redis_server``) and the live provider adapters behind ``stockray fetch`` (``providers``).

May import: ``kernels``. Never trains or serves models.
"""
