"""Scorer: one ONNX Runtime session per horizon; turns a feature row into point forecasts."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from serving.calibration import Calibration
from serving.errors import FeaturesUnavailableError
from serving.models import DEFAULT_ALIAS, ModelBundle
from training.export import ONNX_INPUT_NAME, onnx_session


@dataclass(frozen=True)
class ModelInfo:
    """What a response reports about the model behind one horizon."""

    horizon: int
    model_name: str
    model_version: str
    feature_names: tuple[str, ...]
    provider: str = ""
    alias: str = DEFAULT_ALIAS
    calibration: Calibration | None = None  # None: no prob_up / interval for this model


def feature_vector(
    values: Mapping[str, float], names: Sequence[str], *, horizon: int, ticker: str = ""
) -> np.ndarray:
    """The model input ``(1, F)`` float32 in ``names`` order.

    Raises:
        FeaturesUnavailableError: a feature is missing or NaN.
    """
    try:  # fast path: every feature present and finite
        x = np.array([values[n] for n in names], dtype=np.float32)
        if not np.isnan(x).any():
            return x[None, :]
    except KeyError:
        pass
    missing = [n for n in names if n not in values]
    nan = [n for n in names if n in values and math.isnan(values[n])]
    if missing or nan:
        parts = []
        if missing:
            parts.append(f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}")
        if nan:
            parts.append(f"NaN {nan[:5]}{'...' if len(nan) > 5 else ''}")
        who = f" for {ticker}" if ticker else ""
        raise FeaturesUnavailableError(
            f"horizon-{horizon} model needs features the online store lacks{who} "
            f"({'; '.join(parts)}): run materialize for the latest feature date, or check "
            "the ticker has enough history"
        )
    return np.fromiter((values[n] for n in names), dtype=np.float32, count=len(names))[None, :]


class Scorer:
    """Point forecasts from ONNX Runtime, one session per horizon (1 intra-op thread)."""

    def __init__(self, bundles: Mapping[int, ModelBundle], *, alias: str = DEFAULT_ALIAS) -> None:
        self._bundles = dict(sorted(bundles.items()))
        self._sessions = {h: onnx_session(b.onnx_path) for h, b in self._bundles.items()}
        self._output = {h: s.get_outputs()[0].name for h, s in self._sessions.items()}
        self._info = {
            h: ModelInfo(
                horizon=h,
                model_name=b.model_name,
                model_version=b.model_version,
                feature_names=b.feature_names,
                # The provider actually used, not the one asked for (ORT falls back silently).
                provider=self._sessions[h].get_providers()[0],
                alias=alias,
                calibration=Calibration.from_meta(b.meta),
            )
            for h, b in self._bundles.items()
        }

    @property
    def models(self) -> dict[int, ModelInfo]:
        return dict(self._info)

    def predict(
        self, values: Mapping[str, float], horizons: Iterable[int], *, ticker: str = ""
    ) -> dict[int, float]:
        """Predicted forward log return per horizon for one feature row."""
        out = {}
        for h in horizons:
            x = feature_vector(values, self._info[h].feature_names, horizon=h, ticker=ticker)
            y = self._sessions[h].run([self._output[h]], {ONNX_INPUT_NAME: x})[0]
            out[h] = float(np.asarray(y).reshape(-1)[0])
        return out

    def predict_matrix(self, x: np.ndarray, horizon: int) -> np.ndarray:
        """Forecasts of ``x`` ``(N, F)`` float32 (columns in the model's feature order)."""
        y = self._sessions[horizon].run([self._output[horizon]], {ONNX_INPUT_NAME: x})[0]
        return np.asarray(y, dtype=np.float64).reshape(-1)
