"""Volume indicators: on-balance volume.

NaN policy: a NaN in close or volume splits the series; OBV restarts from the next bar's
volume (as TA-Lib starts from the first bar's volume).
"""

from __future__ import annotations

import math

import numpy as np

from kernels._jit import as_f64, by_segment, njit, same_length

__all__ = ["ObvState", "obv", "obv_ref"]


@njit
def _obv_batch(c, vol, out):
    run = 0
    acc = 0.0
    prev = 0.0
    for i in range(c.shape[0]):
        x = c[i]
        v = vol[i]
        if math.isnan(x) or math.isnan(v):
            run = 0
            out[i] = np.nan
            continue
        run += 1
        if run == 1:
            acc = v
        else:
            # branchless: up/down days are unpredictable, a branch mispredicts half the time
            acc += v * np.sign(x - prev)
        prev = x
        out[i] = acc


@njit
def _obv_step(s, x, v):
    # s = [run, acc, prev_close]
    if math.isnan(x) or math.isnan(v):
        s[0] = 0.0
        return np.nan
    run = s[0] + 1.0
    s[0] = run
    acc = s[1]
    if run == 1.0:
        acc = v
    else:
        acc += v * np.sign(x - s[2])
    s[1] = acc
    s[2] = x
    return acc


def obv(close, volume) -> np.ndarray:
    """On-balance volume (TA-Lib ``OBV``).

    Formula: ``obv_0 = v_0``; ``obv_t = obv_{t-1} + sign(c_t - c_{t-1}) v_t``.

    Args:
        close: 1-D closes.
        volume: 1-D volumes.

    Returns:
        float64 array, same length (no warm-up; NaN only where an input is NaN).
    """
    c, v = as_f64(close, "close"), as_f64(volume, "volume")
    same_length(c, v)
    out = np.empty_like(c)
    _obv_batch(c, v, out)
    return out


class ObvState:
    """Incremental :func:`obv`; ``update(close, volume)``."""

    def __init__(self):
        self._s = np.zeros(3)

    def update(self, close: float, volume: float) -> float:
        """Feed one bar; return the running OBV."""
        return _obv_step(self._s, float(close), float(volume))


def obv_ref(close, volume) -> np.ndarray:
    """Plain numpy spec of :func:`obv`."""

    def f(c, v):
        signed = np.sign(np.diff(c)) * v[1:]
        return np.concatenate([[v[0]], v[0] + np.cumsum(signed)])

    arrs = (np.asarray(a, dtype=np.float64) for a in (close, volume))
    return by_segment(f, 1, *arrs)[0]
