"""Explainer: per-feature attributions per horizon, added up to the prediction.

- LightGBM bundles: exact TreeSHAP through LightGBM's ``pred_contrib``.
- Sequence bundles (LSTM / Transformer): integrated gradients (``training.attribution``) of
  the torch net rebuilt from the bundle's ``state.pt``, against the training-mean window;
  the ``(L, F)`` attributions are summed over the window's rows into one value per feature,
  and ``base_value`` is the net's output at that baseline. Completeness:
  ``base_value + sum(contributions) == net(x)`` up to the quadrature gap (returned by
  ``integrated_gradients`` as ``delta``; ~1e-5 of the output at 50 steps here) plus the
  ONNX-vs-torch parity of the bundle.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from serving.errors import ServingError
from serving.models import ModelBundle
from serving.scorer import feature_vector
from training.bundle import KIND_SEQUENCE

# Interpolation steps of integrated gradients: 50 gives a completeness gap ~1e-4 relative.
IG_STEPS = 50


@dataclass(frozen=True)
class Contribution:
    feature: str
    value: float
    shap: float


@dataclass(frozen=True)
class Explanation:
    """``base_value + sum(all shap) == the model's prediction``: exactly (float64) for
    LightGBM, up to the integrated-gradients quadrature gap for sequence models."""

    base_value: float
    contributions: tuple[Contribution, ...]  # top-|shap| first


class SequenceAttributor:
    """Integrated gradients of one sequence bundle's head (torch, imported here only).

    Args:
        bundle: a ``kind: "sequence"`` bundle (its ``state.pt`` rebuilds the net).
        steps: IG interpolation steps.
    """

    def __init__(self, bundle: ModelBundle, *, steps: int = IG_STEPS) -> None:
        import torch

        from training.attribution import integrated_gradients
        from training.nets import load_state, net_from_state

        torch.set_num_threads(1)  # one row per request; the replica's CPU share is < 1 core
        self._ig = integrated_gradients
        self.net = net_from_state(load_state(bundle.state_path))
        self.output_index = bundle.output_index
        self.steps = steps
        self._lock = threading.Lock()  # one IG at a time through the shared module

    def attribute(self, x: np.ndarray) -> tuple[np.ndarray, float, float]:
        """``(contributions (F,), base value, completeness gap)`` of window ``x`` ``(1, L, F)``."""
        with self._lock:
            res = self._ig(self.net, x, output_index=self.output_index, steps=self.steps)
        return (
            res.by_feature()[0].astype(np.float64),
            float(res.baseline_output[0]),
            float(res.delta[0]),
        )


class Explainer:
    """TreeSHAP via ``booster.predict(x, pred_contrib=True, num_threads=1)`` for LightGBM
    bundles; integrated gradients (`SequenceAttributor`) for sequence bundles.

    ``pred_contrib`` equals ``shap.TreeExplainer`` exactly and needs no extra dependency; one
    thread because default threading is slower per row on a loaded host. Daily features change
    once a day, so explanations are cached by the exact model input — feature vector, or
    window for sequence models (``cache_size`` 0 = off).
    """

    def __init__(self, bundles: Mapping[int, ModelBundle], *, cache_size: int = 1024) -> None:
        self._bundles = dict(sorted(bundles.items()))
        self._seq = {
            h: SequenceAttributor(b) for h, b in self._bundles.items() if b.kind == KIND_SEQUENCE
        }
        trees = {h: b for h, b in self._bundles.items() if h not in self._seq}
        self._boosters = {}
        if trees:
            import lightgbm as lgb

            self._boosters = {h: lgb.Booster(model_file=str(b.booster_path)) for h, b in trees.items()}
        self._cache_size = cache_size
        # (horizon, vector bytes) -> (shap row (F,), base value)
        self._cache: OrderedDict[tuple[int, bytes], tuple[np.ndarray, float]] = OrderedDict()
        # Serve runs sync methods on a thread pool: guard the cache, not the (thread-safe)
        # LightGBM predict.
        self._lock = threading.Lock()
        self.hits = self.misses = 0  # cache statistics (approximate under threads)

    def _contrib(self, h: int, x: np.ndarray) -> tuple[np.ndarray, float]:
        key = (h, x.tobytes())
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                self.hits += 1
                self._cache.move_to_end(key)
                return hit
        self.misses += 1
        if h in self._seq:
            shap, base, _ = self._seq[h].attribute(x)
            res = (shap, base)
        else:
            # (1, F + 1) float64; the last column is the expected value (base).
            c = self._boosters[h].predict(x.astype(np.float64), pred_contrib=True, num_threads=1)
            c = np.asarray(c, dtype=np.float64).reshape(-1)
            res = (c[:-1], float(c[-1]))
        self._store([(key, res)])
        return res

    def _store(self, items: list[tuple[tuple[int, bytes], tuple[np.ndarray, float]]]) -> None:
        if self._cache_size <= 0:
            return
        with self._lock:
            for key, res in items:
                self._cache[key] = res
                self._cache.move_to_end(key)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)

    def cached(self, h: int, x: np.ndarray) -> tuple[np.ndarray, float] | None:
        """The cached ``(shap (F,), base)`` of vector ``x`` ``(1, F)``, or None."""
        with self._lock:
            return self._cache.get((h, x.tobytes()))

    def warm(
        self, rows: Sequence[Mapping[str, float]], horizons: Iterable[int] | None = None
    ) -> int:
        """Precompute the explanations of ``rows`` in one ``pred_contrib`` call per horizon.

        Daily features change once a day: warming every ticker's current row (on replica start,
        after a model swap, or for a PredictBatch) costs one batch call (~0.5 ms/row) instead
        of one call per request. Rows with missing/NaN features and already-cached vectors are
        skipped. Returns the number of vectors computed.
        """
        done = 0
        for h in self._bundles if horizons is None else horizons:
            if h in self._seq:
                continue  # windows come from the offline store per request; IG is ~1 ms
            names = self._bundles[h].feature_names
            xs: dict[bytes, np.ndarray] = {}
            for values in rows:
                try:
                    x = feature_vector(values, names, horizon=h)
                except ServingError:
                    continue
                if self.cached(h, x) is None:
                    xs.setdefault(x.tobytes(), x)
            if not xs:
                continue
            mat = np.concatenate(list(xs.values())).astype(np.float64)
            c = np.asarray(
                self._boosters[h].predict(mat, pred_contrib=True, num_threads=1),
                dtype=np.float64,
            ).reshape(len(xs), -1)
            self._store([((h, k), (c[i, :-1].copy(), float(c[i, -1]))) for i, k in enumerate(xs)])
            done += len(xs)
        return done

    def explain(
        self,
        values: Mapping[str, float],
        horizons: Iterable[int],
        *,
        top_k: int = 5,
        ticker: str = "",
        inputs: Mapping[int, np.ndarray] | None = None,
    ) -> dict[int, Explanation]:
        """Base value and the ``top_k`` largest-|shap| contributions per horizon (0 = all).

        Args:
            values: the ticker's current feature row.
            inputs: per sequence horizon, its ``(1, L, F)`` window (``serving.scorer.
                model_input``); a contribution's ``value`` is then the window's last row.
        """
        out = {}
        for h in horizons:
            names = self._bundles[h].feature_names
            if h in self._seq:
                if inputs is None or h not in inputs:
                    raise ValueError(f"horizon {h} is a sequence model: pass its window")
                x = inputs[h]
                current = x[0, -1].astype(np.float64)
            else:
                x = feature_vector(values, names, horizon=h, ticker=ticker)
                current = np.array([values[n] for n in names], dtype=np.float64)
            shap, base = self._contrib(h, x)
            # Stable sort so ties keep feature order; top_k <= 0 means every feature.
            order = np.argsort(-np.abs(shap), kind="stable")
            if top_k > 0:
                order = order[:top_k]
            out[h] = Explanation(
                base_value=base,
                contributions=tuple(
                    Contribution(names[i], float(current[i]), float(shap[i])) for i in order
                ),
            )
        return out
