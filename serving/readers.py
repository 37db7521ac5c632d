"""The feature-reader contract and its deferred construction inside a replica.

A reader answers ``read(tickers) -> {ticker: {feature: float, ..., "feature_ts": epoch_s} | None}``
(None: the store does not know the ticker). The real one is ``features.store:FeastOnlineReader``;
tests pass a fake by import path. Readers are built from a spec *inside* the replica so nothing
unpicklable (a Feast store, a DB connection) crosses a process boundary.

A reader may also carry ``generation_path``: the file its store's writers replace after each
write (``features.store.bump_online_generation``); the lookup watches it to drop its cache.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

FEATURE_TS_KEY = "feature_ts"
DEFAULT_READER = "features.store:FeastOnlineReader"


@runtime_checkable
class FeatureReader(Protocol):
    def read(self, tickers: Sequence[str]) -> dict[str, dict[str, float] | None]: ...


def import_object(spec: str) -> Any:
    """Import ``"package.module:attr"`` (or ``"package.module.attr"``)."""
    module_name, sep, attr = spec.partition(":")
    if not sep:
        module_name, _, attr = spec.rpartition(".")
    if not module_name or not attr:
        raise ValueError(f"bad import spec {spec!r}: expected 'package.module:Name'")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def build_reader(spec: str, kwargs: Mapping[str, Any] | None = None) -> FeatureReader:
    """Construct the reader class (or factory) named by ``spec`` with ``kwargs``."""
    factory = import_object(spec)
    reader = factory(**dict(kwargs or {}))
    if not isinstance(reader, FeatureReader):
        raise TypeError(f"{spec} built {type(reader).__name__}, which has no read(tickers)")
    return reader
