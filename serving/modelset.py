"""Served models by registry alias, swapped atomically when the registry moves an alias.

``ServedModels`` holds one :class:`ModelSet` (Scorer + Explainer of every horizon) per alias
(``champion``, optionally ``challenger``). :meth:`ServedModels.refresh` asks the source what
each alias points at now (one cheap registry query per horizon, no download); when that
changed, it downloads and builds the new set *off the request path* and then replaces the
dict reference in one assignment. A request takes one snapshot (``sets``) at its start, so it
is answered wholly by the old or wholly by the new models: zero failed requests during a swap.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from serving.explainer import Explainer
from serving.history import OfflineHistory
from serving.models import ModelSource, alias_versions, resolve_bundles
from serving.scorer import ModelInfo, Scorer
from training.bundle import KIND_SEQUENCE

log = logging.getLogger(__name__)
CHAMPION, CHALLENGER = "champion", "challenger"


@dataclass(frozen=True)
class ModelSet:
    """One alias's models; ``scorer``/``explainer`` may be None in split-mode stage replicas."""

    alias: str
    fingerprint: tuple[tuple[int, str], ...]
    info: dict[int, ModelInfo]
    scorer: Scorer | None
    explainer: Explainer | None
    history: OfflineHistory | None = None  # sequence models' windows (None: LightGBM only)


class ServedModels:
    """Alias -> :class:`ModelSet`, built from ``sources`` (alias -> :class:`ModelSource`).

    Args:
        sources: the champion source is required; other aliases (challenger) are optional and
            may cover a subset of horizons.
        with_scorer / with_explainer: which stage objects to build (split mode builds one).
        explain_cache_size: per explainer.
        warm_rows: feature rows whose explanations are precomputed in one batch after each
            (re)load (a callable, so it reads the current rows).
        history: the offline store's per-ticker history; required when a source holds
            sequence (LSTM / Transformer) bundles.
    """

    def __init__(
        self,
        sources: Mapping[str, ModelSource],
        *,
        with_scorer: bool = True,
        with_explainer: bool = True,
        explain_cache_size: int = 1024,
        warm_rows=None,
        history: OfflineHistory | None = None,
    ) -> None:
        if CHAMPION not in sources:
            raise ValueError(f"sources need a {CHAMPION!r} entry, got {sorted(sources)}")
        self._sources = dict(sources)
        self._with_scorer, self._with_explainer = with_scorer, with_explainer
        self._cache_size = explain_cache_size
        self._warm_rows = warm_rows
        self.history = history
        self._refresh_lock = threading.Lock()
        self.swaps = 0
        self.sets: dict[str, ModelSet] = {}
        self._loaded_pointer: dict[str, tuple[tuple[int, str], ...]] = {}
        self.refresh()
        if CHAMPION not in self.sets:
            raise LookupError(f"no champion models in {self._sources[CHAMPION]}")

    def _build(self, alias: str, source: ModelSource) -> ModelSet | None:
        optional = alias != CHAMPION
        bundles = resolve_bundles(source, missing_ok=optional)
        if not bundles:
            return None
        fp = tuple(sorted((h, b.model_version) for h, b in bundles.items()))
        seq = sorted(h for h, b in bundles.items() if b.kind == KIND_SEQUENCE)
        if seq and self.history is None:
            raise ValueError(
                f"{alias} horizons {seq} are sequence models, which read each ticker's history "
                "from the offline store: set StageConfig.offline_features "
                "(<data_dir>/offline/features.parquet)"
            )
        scorer = Scorer(bundles, alias=alias)
        explainer = (
            Explainer(bundles, cache_size=self._cache_size) if self._with_explainer else None
        )
        if explainer is not None and self._warm_rows is not None:
            try:
                explainer.warm(list(self._warm_rows()))
            except Exception:  # warming is an optimisation, never a reason not to serve
                log.exception("explanation warm-up failed for %s", alias)
        return ModelSet(
            alias=alias,
            fingerprint=fp,
            info=scorer.models,
            scorer=scorer if self._with_scorer else None,
            explainer=explainer,
            history=self.history,
        )

    def _pointer(self, alias: str, source: ModelSource) -> tuple[tuple[int, str], ...]:
        return tuple(sorted(alias_versions(source, missing_ok=alias != CHAMPION).items()))

    def refresh(self) -> list[str]:
        """Reload the aliases whose registry target changed; returns them (empty: no change).

        Errors while reloading keep the current models (logged): a half-registered version
        must not take the service down.
        """
        with self._refresh_lock:
            new = dict(self.sets)
            changed = []
            for alias, source in self._sources.items():
                cur = self.sets.get(alias)
                try:
                    ptr = self._pointer(alias, source)
                    if cur is not None and self._loaded_pointer.get(alias) == ptr:
                        continue
                    built = self._build(alias, source) if ptr else None
                except Exception:
                    if alias == CHAMPION and cur is None:
                        raise
                    log.exception("reloading %s models failed; keeping the current ones", alias)
                    continue
                self._loaded_pointer[alias] = ptr
                if built is None:
                    if new.pop(alias, None) is not None:
                        changed.append(alias)
                    continue
                new[alias] = built
                changed.append(alias)
            if changed:
                self.sets = new  # one reference assignment: requests see old or new, never a mix
                log.info("models loaded: %s", {a: new[a].fingerprint for a in changed if a in new})
                self.swaps += 1
            return changed

    def info(self) -> dict[str, dict[int, ModelInfo]]:
        return {a: s.info for a, s in self.sets.items()}

    def warm(self, rows: Sequence[Mapping[str, float]]) -> int:
        return sum(s.explainer.warm(rows) for s in self.sets.values() if s.explainer is not None)


class Watcher:
    """Calls ``served.refresh()`` every ``interval_s`` on a daemon thread (0 = stopped)."""

    def __init__(self, served: ServedModels, interval_s: float) -> None:
        self._served = served
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._reload_token = ""

    async def apply(self, poll_s: float, reload_token: str) -> None:
        """A new routing config: the poll interval, and a refresh now if the token changed."""
        self.interval_s = poll_s
        self.start()
        if reload_token != self._reload_token:
            # Off the event loop: downloading and building sessions takes ~100 ms-1 s.
            await asyncio.to_thread(self._served.refresh)
        self._reload_token = reload_token

    def start(self) -> None:
        if self.interval_s > 0 and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="model-watcher", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self._served.refresh()
            except Exception:
                log.exception("model watcher: refresh failed")

    def stop(self) -> None:
        self._stop.set()
