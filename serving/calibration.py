"""Direction probability and conformal intervals from a bundle's validation residuals.

``training.bundle.residual_calibration`` stores, in ``bundle.json`` under
``extra.metrics``: ``val_resid_mean``, ``val_resid_std`` and ``val_conformal_q80`` /
``val_conformal_q90`` (split-conformal half-widths: the finite-sample-corrected quantile of
``|y - prediction|`` on the purged validation rows the booster never saw).

- **Interval**: ``prediction ± q_c`` covers the realised forward log return with probability
  >= c (marginal, under exchangeability of validation and live residuals; overlapping
  multi-day labels and regime changes make this approximate).
- **P(up)**: ``Phi((prediction + mean) / std)``: P(label > 0) under a Normal approximation of
  the validation residuals around the prediction.

A sequence bundle (one network, every horizon) stores the same keys per horizon under
``calibration[str(h)]``; the entry of the bundle's own ``horizon`` is used.

A bundle without these keys (exported before they existed, or a rank objective) serves no
interval and no P(up): the fields are absent, never invented.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Calibration:
    resid_mean: float
    resid_std: float
    conformal: tuple[tuple[float, float], ...]  # (coverage, half-width), ascending coverage

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any]) -> Calibration | None:
        """The calibration in a bundle's metadata, or None when it has none."""
        per_h = meta.get("calibration") or {}
        if str(meta.get("horizon")) in per_h:
            m = per_h[str(meta.get("horizon"))] or {}
        else:
            m = (meta.get("extra") or {}).get("metrics") or {}
        try:
            mean, std = float(m["val_resid_mean"]), float(m["val_resid_std"])
        except (KeyError, TypeError, ValueError):
            return None
        conf = []
        for k, v in m.items():
            if k.startswith("val_conformal_q") and k[15:].isdigit() and math.isfinite(float(v)):
                conf.append((int(k[15:]) / 100.0, float(v)))
        if not (math.isfinite(mean) and math.isfinite(std) and std > 0):
            return None
        return cls(mean, std, tuple(sorted(conf)))

    def prob_up(self, prediction: float) -> float:
        z = (prediction + self.resid_mean) / self.resid_std
        return 0.5 * math.erfc(-z / math.sqrt(2.0))

    def interval(self, prediction: float, coverage: float) -> tuple[float, float, float] | None:
        """``(lower, upper, coverage)`` for the stored coverage closest to ``coverage``."""
        if not self.conformal:
            return None
        c, q = min(self.conformal, key=lambda cq: abs(cq[0] - coverage))
        return prediction - q, prediction + q, c
