"""Moving averages: SMA, EMA (TA-Lib seeding), WMA.

Every batch kernel has a step twin (``_<name>_step``) with the same floating-point operations
in the same order, so ``<Name>State`` and the vectorised engine reproduce the batch values
bit for bit. NaN policy: a NaN splits the series; each NaN-free run warms up afresh.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from kernels._jit import as_f64, by_segment, check_length, fma, njit

__all__ = [
    "EmaState",
    "SmaState",
    "WmaState",
    "ema",
    "ema_ref",
    "sma",
    "sma_ref",
    "wma",
    "wma_ref",
]


# --- SMA -----------------------------------------------------------------------------------
@njit
def _sma_batch(x, n, out):
    # s += (v - old): one add on the dependency chain per bar, where TA-Lib's (s + v) - old
    # has two (8 cycles a bar; 100k bars took 250 us, as long as TA-Lib, now half of that).
    s = 0.0
    run = 0
    for i in range(x.shape[0]):
        v = x[i]
        if math.isnan(v):
            run = 0
            s = 0.0
            out[i] = np.nan
            continue
        run += 1
        if run > n:
            s += v - x[i - n]
            out[i] = s / n
        else:
            s += v
            out[i] = s / n if run == n else np.nan


@njit
def _sma_step(s, v, n):
    # s = [run, sum, pos, ring[0:n]]
    if math.isnan(v):
        s[0] = 0.0
        s[1] = 0.0
        return np.nan
    run = s[0] + 1.0
    pos = int(s[2])
    t = s[1] + (v - s[3 + pos]) if run > n else s[1] + v
    s[3 + pos] = v
    pos += 1
    if pos == n:
        pos = 0
    s[0] = run
    s[1] = t
    s[2] = pos
    return t / n if run >= n else np.nan


def sma(close, length: int = 30) -> np.ndarray:
    """Simple moving average (TA-Lib ``SMA``).

    Formula: ``sma_t = (1/n) * sum_{j<n} x_{t-j}`` (running sum, updated by ``x_t - x_{t-n}``).

    Args:
        close: 1-D values.
        length: window ``n`` (>= 1).

    Returns:
        float64 array, same length, NaN for the first ``n - 1`` values of each NaN-free run.
    """
    x = as_f64(close, "close")
    n = check_length(length)
    out = np.empty_like(x)
    _sma_batch(x, n, out)
    return out


class SmaState:
    """Incremental :func:`sma`: ``SmaState(20).update(x)`` returns the newest value."""

    def __init__(self, length: int = 30):
        self.length = check_length(length)
        self._s = np.zeros(3 + self.length)

    def update(self, x: float) -> float:
        """Feed one value; return the SMA ending at it (NaN during warm-up)."""
        return _sma_step(self._s, float(x), self.length)


def sma_ref(close, length: int = 30) -> np.ndarray:
    """Plain numpy spec of :func:`sma`: the mean of each full window."""
    x = np.asarray(close, dtype=np.float64)

    def f(seg):
        out = np.full(seg.shape[0], np.nan)
        if seg.shape[0] >= length:
            out[length - 1 :] = sliding_window_view(seg, length).mean(axis=1)
        return out

    return by_segment(f, 1, x)[0]


# --- EMA -----------------------------------------------------------------------------------
@njit
def _ema_batch(x, n, k, out):
    k1 = 1.0 - k
    e = 0.0
    run = 0
    for i in range(x.shape[0]):
        v = x[i]
        if math.isnan(v):
            run = 0
            e = 0.0
            out[i] = np.nan
            continue
        run += 1
        if run < n:
            e += v
            out[i] = np.nan
        elif run == n:
            e = (e + v) / n
            out[i] = e
        else:
            # fused: one 4-cycle op on the chain instead of a multiply then an add
            e = fma(e, k1, v * k)
            out[i] = e


@njit
def _ema_step(s, v, n, k):
    # s = [run, e]
    if math.isnan(v):
        s[0] = 0.0
        s[1] = 0.0
        return np.nan
    run = s[0] + 1.0
    e = s[1]
    s[0] = run
    if run < n:
        s[1] = e + v
        return np.nan
    if run == n:
        e = (e + v) / n
    else:
        e = fma(e, 1.0 - k, v * k)
    s[1] = e
    return e


def _ema_k(length: int, alpha: float | None) -> float:
    if alpha is None:
        return 2.0 / (length + 1.0)
    if not 0.0 < alpha <= 1.0:
        raise ValueError(f"alpha must be in (0, 1], got {alpha!r}")
    return float(alpha)


def ema(close, length: int = 30, alpha: float | None = None) -> np.ndarray:
    """Exponential moving average, seeded like TA-Lib ``EMA``.

    Formula: ``ema_{n-1} = mean(x_0..x_{n-1})``, then ``ema_t = (1 - k) ema_{t-1} + k x_t``
    with ``k = 2 / (n + 1)`` (or ``alpha``), evaluated as one fused multiply-add.

    Args:
        close: 1-D values.
        length: seed window ``n`` (>= 1).
        alpha: smoothing factor overriding ``2 / (n + 1)`` (e.g. ``1/n`` for Wilder).

    Returns:
        float64 array, same length, NaN for the first ``n - 1`` values of each NaN-free run.
    """
    x = as_f64(close, "close")
    n = check_length(length)
    out = np.empty_like(x)
    _ema_batch(x, n, _ema_k(n, alpha), out)
    return out


class EmaState:
    """Incremental :func:`ema`."""

    def __init__(self, length: int = 30, alpha: float | None = None):
        self.length = check_length(length)
        self.k = _ema_k(self.length, alpha)
        self._s = np.zeros(2)

    def update(self, x: float) -> float:
        """Feed one value; return the EMA ending at it (NaN during warm-up)."""
        return _ema_step(self._s, float(x), self.length, self.k)


def ema_ref(close, length: int = 30, alpha: float | None = None) -> np.ndarray:
    """Plain numpy spec of :func:`ema`: SMA seed, then the recursion."""
    x = np.asarray(close, dtype=np.float64)
    k = _ema_k(length, alpha)

    def f(seg):
        out = np.full(seg.shape[0], np.nan)
        if seg.shape[0] >= length:
            e = seg[:length].mean()
            out[length - 1] = e
            for i in range(length, seg.shape[0]):
                e = e + k * (seg[i] - e)
                out[i] = e
        return out

    return by_segment(f, 1, x)[0]


# --- WMA -----------------------------------------------------------------------------------
@njit
def _wma_batch(x, n, out):
    # TA-Lib's running form: ws = weighted sum of the window minus its plain sum, ps = plain
    # sum. Each is updated by one add per bar (ps += v - old; ws += n v - ps), so both
    # dependency chains are one add long.
    div = n * (n + 1) / 2.0
    ws = 0.0
    ps = 0.0
    run = 0
    for i in range(x.shape[0]):
        v = x[i]
        if math.isnan(v):
            run = 0
            ws = 0.0
            ps = 0.0
            out[i] = np.nan
            continue
        run += 1
        if run > n:
            ps += v - x[i - n]
        elif run < n:
            ps += v
            ws += v * run
            out[i] = np.nan
            continue
        else:
            ps += v
        vn = v * n
        out[i] = (ws + vn) / div
        ws += vn - ps


@njit
def _wma_step(s, v, n):
    # s = [run, ws, ps, pos, ring[0:n]]
    if math.isnan(v):
        s[0] = 0.0
        s[1] = 0.0
        s[2] = 0.0
        return np.nan
    run = s[0] + 1.0
    ws = s[1]
    ps = s[2]
    pos = int(s[3])
    old = s[4 + pos]
    s[4 + pos] = v
    pos += 1
    if pos == n:
        pos = 0
    s[0] = run
    s[3] = pos
    if run < n:
        s[1] = ws + v * run
        s[2] = ps + v
        return np.nan
    if run > n:
        ps += v - old
    else:
        ps += v
    vn = v * n
    out = (ws + vn) / (n * (n + 1) / 2.0)
    s[1] = ws + (vn - ps)
    s[2] = ps
    return out


def wma(close, length: int = 30) -> np.ndarray:
    """Linearly weighted moving average (TA-Lib ``WMA``).

    Formula: ``wma_t = sum_{j<n} (n - j) x_{t-j} / (n (n + 1) / 2)``.

    Args:
        close: 1-D values.
        length: window ``n`` (>= 1).

    Returns:
        float64 array, same length, NaN for the first ``n - 1`` values of each NaN-free run.
    """
    x = as_f64(close, "close")
    n = check_length(length)
    out = np.empty_like(x)
    _wma_batch(x, n, out)
    return out


class WmaState:
    """Incremental :func:`wma`."""

    def __init__(self, length: int = 30):
        self.length = check_length(length)
        self._s = np.zeros(4 + self.length)

    def update(self, x: float) -> float:
        """Feed one value; return the WMA ending at it (NaN during warm-up)."""
        return _wma_step(self._s, float(x), self.length)


def wma_ref(close, length: int = 30) -> np.ndarray:
    """Plain numpy spec of :func:`wma`: weights 1..n, newest heaviest."""
    x = np.asarray(close, dtype=np.float64)
    w = np.arange(1, length + 1, dtype=np.float64)

    def f(seg):
        out = np.full(seg.shape[0], np.nan)
        if seg.shape[0] >= length:
            out[length - 1 :] = sliding_window_view(seg, length) @ w / w.sum()
        return out

    return by_segment(f, 1, x)[0]
