"""Scorer: ONNX Runtime sessions that turn model inputs into point forecasts.

A LightGBM bundle reads one feature row ``[1, F]`` (`feature_vector`); a sequence bundle
(LSTM / Transformer) reads the ticker's last ``L`` rows ``[1, L, F]`` from the offline store
(`model_input` with a ``serving.history.OfflineHistory``) and its output column
``output_index`` is the bundle's horizon.

A multi-horizon sequence net is registered once per horizon, so several bundles carry the
same ONNX graph. Horizons whose bundles hold byte-identical graphs with the same input
(`ModelInfo.graph`) share one session; `input_groups` tells callers which horizons can take
one input and one run (`Scorer.predict_group`).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from features.text.fill import check_fills
from serving.calibration import Calibration
from serving.errors import FeaturesUnavailableError
from serving.models import DEFAULT_ALIAS, ModelBundle
from training.bundle import KIND_SEQUENCE, onnx_session


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
    kind: str = "lgbm"  # "lgbm" (input [1, F]) or "sequence" (input [1, window, F])
    family: str = "lgbm"  # registry family: lgbm, lstm, transformer
    window: int = 1  # rows of history per input
    graph: str = ""  # SHA-256 of the ONNX graph: equal graphs share a session and a run
    # opt-in feature services the model reads beside the price features (bundle
    # extra.feature_set.services, e.g. stockray_text_v1), each with its fill rule
    services: tuple[str, ...] = ()


def input_groups(info: Mapping[int, ModelInfo], horizons: Iterable[int]) -> list[tuple[int, ...]]:
    """``horizons`` grouped by model graph and input (same `ModelInfo.graph`, kind, window and
    feature order), in first-seen order: each group needs one input and one ONNX run.
    Bundles without a digest stay alone."""
    groups: dict[tuple, list[int]] = {}
    for h in horizons:
        i = info[h]
        key = (i.graph, i.kind, i.window, i.feature_names) if i.graph else (h,)
        groups.setdefault(key, []).append(h)
    return [tuple(g) for g in groups.values()]


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


def model_input(
    values: Mapping[str, float],
    info: ModelInfo,
    *,
    ticker: str,
    feature_ts: float,
    history=None,
) -> np.ndarray:
    """The input of ``info``'s model for one ticker: ``(1, F)`` or, for a sequence model,
    ``(1, L, F)`` — the ticker's offline rows at or before ``feature_ts`` (the online row's
    time, so both families score the same as-of features).

    Both kinds need the current online row complete (same FAILED_PRECONDITION as LightGBM);
    a sequence window may hold NaN in *earlier* rows (a young ticker's padding), which the
    network reads as its training mean, as in training.

    Raises:
        FeaturesUnavailableError: missing/NaN current features, no offline history, or the
            offline store lags the online row (its newest row at or before ``feature_ts`` is
            older than ``feature_ts``).
    """
    x = feature_vector(values, info.feature_names, horizon=info.horizon, ticker=ticker)
    if info.kind != KIND_SEQUENCE:
        return x
    if history is None:
        raise FeaturesUnavailableError(
            f"horizon-{info.horizon} model is a sequence model but this server has no offline "
            "history configured (StageConfig.offline_features)"
        )
    if math.isnan(feature_ts):
        raise FeaturesUnavailableError(
            f"the online row of {ticker} has no feature_ts: a sequence model needs it to cut "
            "its history window; re-run materialize"
        )
    win, last = history.window(ticker, feature_ts, info.feature_names, info.window)
    if last < feature_ts:
        raise FeaturesUnavailableError(
            f"the offline store's newest row for {ticker} at or before the online row's time "
            f"is older than it ({last:.0f} < {feature_ts:.0f} epoch s): the offline store lags "
            "the online store; re-run `stockray features`"
        )
    return win[None]


def bundle_services(meta: Mapping) -> tuple[str, ...]:
    """The opt-in feature services a bundle was trained on (``extra.feature_set``).

    Raises:
        ValueError: the bundle wants a fill rule this server does not apply (it would score
            inputs unlike its training rows).
    """
    fset = (meta.get("extra") or {}).get("feature_set") or {}
    services = tuple(fset.get("services") or ())
    fills = dict(fset.get("fills") or {})
    missing = sorted(set(services) - set(fills))
    if missing:
        raise ValueError(f"bundle {meta.get('model_name')} names service(s) {missing} without "
                         "a fill rule: re-export it")
    check_fills(fills)
    return services


class Scorer:
    """Point forecasts from ONNX Runtime (1 intra-op thread per session); horizons whose
    bundles hold the same graph share one session (see module docstring)."""

    def __init__(self, bundles: Mapping[int, ModelBundle], *, alias: str = DEFAULT_ALIAS) -> None:
        self._bundles = dict(sorted(bundles.items()))
        digest = {
            h: hashlib.sha256(b.onnx_path.read_bytes()).hexdigest()
            for h, b in self._bundles.items()
        }
        by_graph: dict[str, object] = {}
        self._sessions = {}
        for h, b in self._bundles.items():
            if digest[h] not in by_graph:
                by_graph[digest[h]] = onnx_session(b.onnx_path)
            self._sessions[h] = by_graph[digest[h]]
        self._input = {h: s.get_inputs()[0].name for h, s in self._sessions.items()}
        self._output = {h: s.get_outputs()[0].name for h, s in self._sessions.items()}
        self._column = {h: b.output_index for h, b in self._bundles.items()}
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
                kind=b.kind,
                family=b.family,
                window=b.window,
                graph=digest[h],
                services=bundle_services(b.meta),
            )
            for h, b in self._bundles.items()
        }

    @property
    def sessions(self) -> int:
        """Distinct ONNX Runtime sessions held (one per distinct graph)."""
        return len({id(s) for s in self._sessions.values()})

    @property
    def models(self) -> dict[int, ModelInfo]:
        return dict(self._info)

    def predict(
        self,
        values: Mapping[str, float],
        horizons: Iterable[int],
        *,
        ticker: str = "",
        feature_ts: float = math.nan,
        history=None,
    ) -> dict[int, float]:
        """Predicted forward log return per horizon for one feature row (sequence models
        also need ``feature_ts`` and ``history``, see `model_input`); one run per graph."""
        out = {}
        for group in input_groups(self._info, horizons):
            x = model_input(
                values, self._info[group[0]], ticker=ticker, feature_ts=feature_ts,
                history=history,
            )
            y = self.predict_group(x, group)[0]
            out.update({h: float(v) for h, v in zip(group, y, strict=True)})
        return out

    def predict_group(self, x: np.ndarray, horizons: Sequence[int]) -> np.ndarray:
        """Forecasts of ``x`` for horizons of one `input_groups` group, in one ONNX run:
        ``(N, len(horizons))`` float64."""
        h0 = horizons[0]
        session = self._sessions[h0]
        if any(self._sessions[h] is not session for h in horizons):
            raise ValueError(f"horizons {list(horizons)} do not share one model graph")
        y = session.run([self._output[h0]], {self._input[h0]: x})[0]
        y = np.asarray(y, dtype=np.float64).reshape(len(x), -1)
        return y[:, [self._column[h] for h in horizons]]

    def predict_matrix(self, x: np.ndarray, horizon: int) -> np.ndarray:
        """Forecasts of ``x`` float32 ``(N, F)`` (LightGBM) or ``(N, L, F)`` (sequence), in
        the model's feature order; ``(N,)`` float64."""
        return self.predict_group(x, (horizon,))[:, 0]
