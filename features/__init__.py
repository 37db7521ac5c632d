"""From raw sources to the feature store: source adapters, validation and quarantine, the
Parquet lake, the Ray Data feature pipeline, targets, and the Feast repo.

May import: ``kernels``. Never trains or serves models.
"""
