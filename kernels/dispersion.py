"""Dispersion: rolling std, z-score, Bollinger bands, ATR and rolling volatility estimators
(close-to-close, Parkinson, Garman-Klass).

Rolling mean/variance use a sliding Welford update (add the new value, drop the oldest) rather
than running sums of ``x`` and ``x**2``: on prices near 100 with a 0.01 spread the sums lose
~8 digits to cancellation, Welford keeps the 1e-9 agreement with pandas two-pass results.
NaN policy: a NaN splits the series; each NaN-free run warms up afresh.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from kernels._jit import as_f64, by_segment, check_length, njit, same_length
from kernels.changes import _returns_batch, _returns_step, log_returns_ref
from kernels.moving import _sma_batch, _sma_step, sma_ref

__all__ = [
    "AtrState",
    "BollingerState",
    "GarmanKlassState",
    "ParkinsonState",
    "RollingStdState",
    "VolatilityState",
    "ZscoreState",
    "atr",
    "atr_ref",
    "bollinger",
    "bollinger_ref",
    "garman_klass",
    "garman_klass_ref",
    "parkinson",
    "parkinson_ref",
    "rolling_std",
    "rolling_std_ref",
    "true_range",
    "true_range_ref",
    "volatility",
    "volatility_ref",
    "zscore",
    "zscore_ref",
]

_LN2 = math.log(2.0)


# --- rolling mean / M2 (sliding Welford) ---------------------------------------------------
# Sliding updates lose digits when the variance collapses: on AAPL, window 2, 589.58/585.56
# followed by 585.57 left M2 with a 2e-8 relative error (pandas' online update: 9e-6). Each
# sliding step adds at most ~eps |d| (|v| + |old| + |m| + |m'|) of error to M2; that budget is
# accumulated and mean/M2 are recomputed two-pass from the window when it exceeds 1e-10 x M2
# (measured on AAPL daily: 1.1% of bars at n=2, none at n=5..60) and every _PERIOD bars
# anyway, to bound the mean's drift (~sqrt(512) ulp of the price). Recomputing every n bars
# instead cost 2 serial add chains per bar: _mvar_batch on 100k bars, n=20, took 757 us vs
# 512 us with 512. A countdown, not `run % n`: an integer modulo per bar cost more than the
# whole update. A window of identical values is
# exactly (v, 0), so z-score / %b of flat minute bars take their defined values, not noise.
_MV = 8  # state header: [run, mean, m2, pos, same, prev, err_budget, next_recompute], ring
_EPS = 2.3e-16  # ~ float64 unit roundoff with margin
_REL = 1e-10  # recompute when the M2 error budget exceeds this fraction of M2
_PERIOD = 512  # bars between unconditional two-pass recomputes (at least n)
_NONE = np.empty(0)  # placeholder for outputs a mode does not write


@njit
def _z_value(v, m, m2, n):
    sd = math.sqrt(m2 / (n - 1))
    return (v - m) / sd if sd > 0.0 else 0.0


@njit
def _mvar_batch(x, n, mode, ddof, k, o1, o2, o3, o4, o5):
    # One fused pass: the rolling mean/M2 update plus the requested output, so Bollinger and
    # rolling std write their results directly (a separate pass over mean/M2 scratch arrays
    # made BBANDS 1.6x TA-Lib on 100k bars; memory traffic, not flops).
    # mode 0: o1, o2 = mean, M2 | 1: o1 = std | 2: o1 = z-score | 3: o1..o5 = Bollinger
    run = 0
    same = 0
    m = 0.0
    m2 = 0.0
    eb = 0.0
    nxt = n
    for i in range(x.shape[0]):
        v = x[i]
        if math.isnan(v):
            run = 0
            m = 0.0
            m2 = 0.0
            eb = 0.0
            _emit_nan(mode, i, o1, o2, o3, o4, o5)
            continue
        run += 1
        if run > 1 and v == x[i - 1]:
            same += 1
        else:
            same = 0
        if run == 1:
            nxt = n
        if run <= n:
            d = v - m
            m += d / run
            m2 += d * (v - m)
        else:
            old = x[i - n]
            d = v - old
            mn = m + d / n
            m2 += d * (v - mn + old - m)
            eb += _EPS * abs(d) * (abs(v) + abs(old) + abs(m) + abs(mn))
            m = mn
        if run == nxt or (run > n and eb > _REL * m2):
            nxt = run + max(n, _PERIOD)
            eb = 0.0
            t = 0.0
            for j in range(i - n + 1, i + 1):
                t += x[j]
            m = t / n
            q = 0.0
            for j in range(i - n + 1, i + 1):
                e = x[j] - m
                q += e * e
            m2 = q
        if same >= n - 1:
            m = v
            m2 = 0.0
        elif m2 < 0.0:
            m2 = 0.0
        if run < n:
            _emit_nan(mode, i, o1, o2, o3, o4, o5)
        elif mode == 1:
            o1[i] = math.sqrt(m2 / (n - ddof))
        elif mode == 2:
            o1[i] = _z_value(v, m, m2, n)
        elif mode == 3:
            sd = math.sqrt(m2 / n)
            u = m + k * sd
            d = m - k * sd
            w = u - d
            o1[i] = u
            o2[i] = m
            o3[i] = d
            o4[i] = (v - d) / w if w > 0.0 else 0.5
            o5[i] = w / m
        else:
            o1[i] = m
            o2[i] = m2


@njit
def _emit_nan(mode, i, o1, o2, o3, o4, o5):
    o1[i] = np.nan
    if mode == 0 or mode == 3:
        o2[i] = np.nan
    if mode == 3:
        o3[i] = np.nan
        o4[i] = np.nan
        o5[i] = np.nan


@njit
def _mvar_step(s, v, n, res):
    # s = [run, mean, m2, pos, same, prev, err_budget, next, ring[0:n]]; res <- (mean, m2)
    res[0] = np.nan
    res[1] = np.nan
    if math.isnan(v):
        s[0] = 0.0
        s[1] = 0.0
        s[2] = 0.0
        s[6] = 0.0
        return
    run = s[0] + 1.0
    m = s[1]
    m2 = s[2]
    pos = int(s[3])
    same = s[4]
    eb = s[6]
    nxt = s[7]
    if run == 1.0:
        nxt = n
    if run > 1.0 and v == s[5]:
        same += 1.0
    else:
        same = 0.0
    if run <= n:
        d = v - m
        m += d / run
        m2 += d * (v - m)
    else:
        old = s[_MV + pos]
        d = v - old
        mn = m + d / n
        m2 += d * (v - mn + old - m)
        eb += _EPS * abs(d) * (abs(v) + abs(old) + abs(m) + abs(mn))
        m = mn
    s[_MV + pos] = v
    pos += 1
    if pos == n:
        pos = 0
    if run == nxt or (run > n and eb > _REL * m2):
        nxt = run + max(n, _PERIOD)
        eb = 0.0
        # two-pass over the window, oldest first (the ring's oldest slot is now `pos`)
        t = 0.0
        for j in range(n):
            k = pos + j
            if k >= n:
                k -= n
            t += s[_MV + k]
        m = t / n
        q = 0.0
        for j in range(n):
            k = pos + j
            if k >= n:
                k -= n
            e = s[_MV + k] - m
            q += e * e
        m2 = q
    if same >= n - 1:
        m = v
        m2 = 0.0
    elif m2 < 0.0:
        m2 = 0.0
    s[0] = run
    s[1] = m
    s[2] = m2
    s[3] = pos
    s[4] = same
    s[5] = v
    s[6] = eb
    s[7] = nxt
    if run >= n:
        res[0] = m
        res[1] = m2


def _std_args(length: int, ddof: int) -> tuple[int, int]:
    n = check_length(length)
    if ddof not in (0, 1) or n <= ddof:
        raise ValueError(f"need ddof in (0, 1) and length > ddof, got length={n}, ddof={ddof}")
    return n, ddof


def rolling_std(x, length: int = 20, ddof: int = 1) -> np.ndarray:
    """Rolling standard deviation (pandas ``rolling(n).std(ddof)``).

    Formula: ``sqrt(sum_{j<n} (x_{t-j} - mean_t)^2 / (n - ddof))``.

    Args:
        x: 1-D values.
        length: window ``n``.
        ddof: 1 for the sample std (pandas default), 0 for the population std (TA-Lib).

    Returns:
        float64 array, same length, NaN for the first ``n - 1`` values of each NaN-free run.
    """
    a = as_f64(x)
    n, ddof = _std_args(length, ddof)
    out = np.empty_like(a)
    _mvar_batch(a, n, 1, ddof, 0.0, out, _NONE, _NONE, _NONE, _NONE)
    return out


class RollingStdState:
    """Incremental :func:`rolling_std`."""

    def __init__(self, length: int = 20, ddof: int = 1):
        self.length, self.ddof = _std_args(length, ddof)
        self._s = np.zeros(_MV + self.length)
        self._res = np.empty(2)

    def update(self, x: float) -> float:
        """Feed one value; return the std of the window ending at it (NaN during warm-up)."""
        _mvar_step(self._s, float(x), self.length, self._res)
        return math.sqrt(self._res[1] / (self.length - self.ddof))


def rolling_std_ref(x, length: int = 20, ddof: int = 1) -> np.ndarray:
    """Plain numpy spec of :func:`rolling_std` (two-pass per window)."""

    def f(seg):
        out = np.full(seg.shape[0], np.nan)
        if seg.shape[0] >= length:
            out[length - 1 :] = sliding_window_view(seg, length).std(axis=1, ddof=ddof)
        return out

    return by_segment(f, 1, np.asarray(x, dtype=np.float64))[0]


# --- z-score -------------------------------------------------------------------------------
def zscore(x, length: int = 20) -> np.ndarray:
    """Rolling z-score of the newest value against its own window.

    Formula: ``z_t = (x_t - mean_t) / std_t`` with the sample std (ddof=1) of the last ``n``
    values including ``x_t``; 0 when the window is flat.

    Args:
        x: 1-D values.
        length: window ``n`` (>= 2).

    Returns:
        float64 array, same length, NaN for the first ``n - 1`` values of each NaN-free run.
    """
    a = as_f64(x)
    n, _ = _std_args(length, 1)
    out = np.empty_like(a)
    _mvar_batch(a, n, 2, 1, 0.0, out, _NONE, _NONE, _NONE, _NONE)
    return out


class ZscoreState:
    """Incremental :func:`zscore`."""

    def __init__(self, length: int = 20):
        self.length, _ = _std_args(length, 1)
        self._s = np.zeros(_MV + self.length)
        self._res = np.empty(2)

    def update(self, x: float) -> float:
        """Feed one value; return its z-score (NaN during warm-up)."""
        _mvar_step(self._s, float(x), self.length, self._res)
        if math.isnan(self._res[0]):
            return math.nan
        return _z_value(float(x), self._res[0], self._res[1], self.length)


def zscore_ref(x, length: int = 20) -> np.ndarray:
    """Plain numpy spec of :func:`zscore`."""

    def f(seg):
        out = np.full(seg.shape[0], np.nan)
        if seg.shape[0] >= length:
            w = sliding_window_view(seg, length)
            sd = w.std(axis=1, ddof=1)
            with np.errstate(divide="ignore", invalid="ignore"):
                z = (seg[length - 1 :] - w.mean(axis=1)) / sd
            out[length - 1 :] = np.where(sd > 0, z, 0.0)
        return out

    return by_segment(f, 1, np.asarray(x, dtype=np.float64))[0]


# --- Bollinger -----------------------------------------------------------------------------
@njit
def _boll_values(v, m, m2, n, k, res):
    sd = math.sqrt(m2 / n)
    up = m + k * sd
    lo = m - k * sd
    res[0] = up
    res[1] = m
    res[2] = lo
    w = up - lo
    res[3] = (v - lo) / w if w > 0.0 else 0.5
    res[4] = w / m


@njit
def _boll_step(s, v, n, k, res):
    _mvar_step(s, v, n, res)
    if math.isnan(res[0]):
        for j in range(5):
            res[j] = np.nan
        return
    _boll_values(v, res[0], res[1], n, k, res)


def bollinger(
    close, length: int = 20, k: float = 2.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Bollinger bands (TA-Lib ``BBANDS`` with SMA, population std) plus %b and bandwidth.

    Formula: ``mid = sma_n``, ``sd`` = population std (ddof=0) of the window,
    ``upper/lower = mid ± k sd``, ``pct_b = (x - lower) / (upper - lower)`` (0.5 when the bands
    touch), ``bandwidth = (upper - lower) / mid``.

    Args:
        close: 1-D prices.
        length: window ``n`` (>= 1).
        k: band width in standard deviations (TA-Lib ``nbdevup = nbdevdn = k``).

    Returns:
        ``(upper, mid, lower, pct_b, bandwidth)`` float64 arrays, NaN for the first ``n - 1``
        values of each NaN-free run.
    """
    x = as_f64(close, "close")
    n = check_length(length)
    up, mid, lo, pb, bw = (np.empty_like(x) for _ in range(5))
    _mvar_batch(x, n, 3, 0, float(k), up, mid, lo, pb, bw)
    return up, mid, lo, pb, bw


class BollingerState:
    """Incremental :func:`bollinger`; ``update`` returns ``(upper, mid, lower, pct_b, bw)``."""

    def __init__(self, length: int = 20, k: float = 2.0):
        self.length = check_length(length)
        self.k = float(k)
        self._s = np.zeros(_MV + self.length)
        self._res = np.empty(5)

    def update(self, x: float) -> tuple[float, float, float, float, float]:
        """Feed one price; return the five band values (NaNs during warm-up)."""
        _boll_step(self._s, float(x), self.length, self.k, self._res)
        return tuple(float(v) for v in self._res)


def bollinger_ref(close, length: int = 20, k: float = 2.0):
    """Plain numpy spec of :func:`bollinger`."""

    def f(seg):
        out = np.full((5, seg.shape[0]), np.nan)
        if seg.shape[0] >= length:
            w = sliding_window_view(seg, length)
            mid, sd = w.mean(axis=1), w.std(axis=1)
            up, lo = mid + k * sd, mid - k * sd
            with np.errstate(divide="ignore", invalid="ignore"):
                pb = np.where(up > lo, (seg[length - 1 :] - lo) / (up - lo), 0.5)
            out[:, length - 1 :] = up, mid, lo, pb, (up - lo) / mid
        return tuple(out)

    return by_segment(f, 5, np.asarray(close, dtype=np.float64))


# --- ATR -----------------------------------------------------------------------------------
@njit
def _tr(h, lo, prev_c):
    return max(max(h - lo, abs(prev_c - h)), abs(prev_c - lo))


@njit
def _atr_batch(h, lo, c, n, out, tr_only):
    # Wilder smoothing as a*c1 + tr*c2: one mul+add on the dependency chain (was mul, add, div:
    # 23 us vs TA-Lib's 6 us on AAPL).
    c1 = (n - 1.0) / n
    c2 = 1.0 / n
    run = 0
    a = 0.0
    for i in range(c.shape[0]):
        out[i] = np.nan
        if math.isnan(h[i]) or math.isnan(lo[i]) or math.isnan(c[i]):
            run = 0
            a = 0.0
            continue
        run += 1
        if run == 1:
            continue
        tr = _tr(h[i], lo[i], c[i - 1])
        if tr_only:
            out[i] = tr
        elif run <= n:
            a += tr
        elif run == n + 1:
            a = (a + tr) / n
            out[i] = a
        else:
            a = a * c1 + tr * c2
            out[i] = a


@njit
def _atr_step(s, h, lo, c, n):
    # s = [run, prev_close, atr]
    if math.isnan(h) or math.isnan(lo) or math.isnan(c):
        s[0] = 0.0
        s[2] = 0.0
        return np.nan
    run = s[0] + 1.0
    s[0] = run
    pc = s[1]
    s[1] = c
    if run == 1.0:
        return np.nan
    tr = _tr(h, lo, pc)
    a = s[2]
    out = np.nan
    if run <= n:
        a += tr
    elif run == n + 1:
        a = (a + tr) / n
        out = a
    else:
        a = a * ((n - 1.0) / n) + tr * (1.0 / n)
        out = a
    s[2] = a
    return out


def atr(high, low, close, length: int = 14) -> np.ndarray:
    """Average true range with Wilder smoothing (TA-Lib ``ATR``).

    Formula: ``tr_t = max(h_t - l_t, |h_t - c_{t-1}|, |l_t - c_{t-1}|)``; ``atr`` = mean of the
    first ``n`` true ranges, then ``atr_t = atr_{t-1} (n - 1) / n + tr_t / n``.

    Args:
        high: 1-D highs.
        low: 1-D lows.
        close: 1-D closes.
        length: Wilder period ``n`` (>= 1).

    Returns:
        float64 array, same length, NaN for the first ``n`` values of each NaN-free run.
    """
    h, lo, c = as_f64(high, "high"), as_f64(low, "low"), as_f64(close, "close")
    same_length(h, lo, c)
    out = np.empty_like(c)
    _atr_batch(h, lo, c, check_length(length), out, False)
    return out


def true_range(high, low, close) -> np.ndarray:
    """True range (TA-Lib ``TRANGE``): ``max(h - l, |h - c_prev|, |l - c_prev|)``.

    Args:
        high: 1-D highs.
        low: 1-D lows.
        close: 1-D closes.

    Returns:
        float64 array, same length, NaN at the first bar of each NaN-free run.
    """
    h, lo, c = as_f64(high, "high"), as_f64(low, "low"), as_f64(close, "close")
    same_length(h, lo, c)
    out = np.empty_like(c)
    _atr_batch(h, lo, c, 1, out, True)
    return out


class AtrState:
    """Incremental :func:`atr`; ``update(high, low, close)``."""

    def __init__(self, length: int = 14):
        self.length = check_length(length)
        self._s = np.zeros(3)

    def update(self, high: float, low: float, close: float) -> float:
        """Feed one bar; return the ATR ending at it (NaN during warm-up)."""
        return _atr_step(self._s, float(high), float(low), float(close), self.length)


def true_range_ref(high, low, close) -> np.ndarray:
    """Plain numpy spec of :func:`true_range`."""

    def f(h, lo, c):
        out = np.full(c.shape[0], np.nan)
        pc = c[:-1]
        out[1:] = np.maximum.reduce([h[1:] - lo[1:], np.abs(h[1:] - pc), np.abs(lo[1:] - pc)])
        return out

    arrs = (np.asarray(a, dtype=np.float64) for a in (high, low, close))
    return by_segment(f, 1, *arrs)[0]


def atr_ref(high, low, close, length: int = 14) -> np.ndarray:
    """Plain numpy spec of :func:`atr`."""
    n = length

    def f(h, lo, c):
        out = np.full(c.shape[0], np.nan)
        tr = true_range_ref(h, lo, c)
        if c.shape[0] > n:
            a = tr[1 : n + 1].mean()
            out[n] = a
            for i in range(n + 1, c.shape[0]):
                a = (a * (n - 1) + tr[i]) / n
                out[i] = a
        return out

    arrs = (np.asarray(a, dtype=np.float64) for a in (high, low, close))
    return by_segment(f, 1, *arrs)[0]


# --- close-to-close volatility -------------------------------------------------------------
def volatility(close, length: int = 20, periods_per_year: float | None = None) -> np.ndarray:
    """Close-to-close volatility: rolling sample std of log returns.

    Formula: ``vol_t = std_{ddof=1}(ln(c_{t-j} / c_{t-j-1}), j < n) * sqrt(periods_per_year)``.

    Args:
        close: 1-D prices.
        length: number of returns ``n`` in the window (>= 2).
        periods_per_year: annualisation factor (252 for daily bars); None = per bar.

    Returns:
        float64 array, same length, NaN for the first ``n`` values of each NaN-free run.
    """
    x = as_f64(close, "close")
    n, _ = _std_args(length, 1)
    lr = np.empty_like(x)
    _returns_batch(x, 1, 1, lr)
    out = rolling_std(lr, n)
    if periods_per_year is not None:
        out *= math.sqrt(periods_per_year)
    return out


class VolatilityState:
    """Incremental :func:`volatility`."""

    def __init__(self, length: int = 20, periods_per_year: float | None = None):
        self.length, _ = _std_args(length, 1)
        self._scale = 1.0 if periods_per_year is None else math.sqrt(periods_per_year)
        self._r = np.zeros(3)
        self._s = np.zeros(_MV + self.length)
        self._res = np.empty(2)

    def update(self, close: float) -> float:
        """Feed one price; return the volatility ending at it (NaN during warm-up)."""
        r = _returns_step(self._r, float(close), 1, 1)
        _mvar_step(self._s, r, self.length, self._res)
        out = math.sqrt(self._res[1] / (self.length - 1))
        return out * self._scale if self._scale != 1.0 else out


def volatility_ref(close, length: int = 20, periods_per_year: float | None = None):
    """Plain numpy spec of :func:`volatility`."""
    out = rolling_std_ref(log_returns_ref(close), length)
    return out * math.sqrt(periods_per_year) if periods_per_year is not None else out


# --- range-based estimators ----------------------------------------------------------------
@njit
def _range_term(o, h, lo, c, gk):
    hl = math.log(h / lo)
    if not gk:
        return hl * hl / (4.0 * math.log(2.0))
    co = math.log(c / o)
    return 0.5 * hl * hl - (2.0 * math.log(2.0) - 1.0) * co * co


@njit
def _range_vol_batch(o, h, lo, c, n, gk, out, term, mean):
    for i in range(c.shape[0]):
        term[i] = _range_term(o[i], h[i], lo[i], c[i], gk)
    _sma_batch(term, n, mean)
    for i in range(c.shape[0]):
        out[i] = math.sqrt(max(mean[i], 0.0)) if not math.isnan(mean[i]) else np.nan


@njit
def _range_vol_step(s, o, h, lo, c, n, gk):
    m = _sma_step(s, _range_term(o, h, lo, c, gk), n)
    return math.sqrt(max(m, 0.0)) if not math.isnan(m) else np.nan


def _range_vol(o, h, lo, c, length, gk):
    arrs = [as_f64(a, nm) for a, nm in ((o, "open"), (h, "high"), (lo, "low"), (c, "close"))]
    same_length(*arrs)
    out, term, mean = (np.empty_like(arrs[3]) for _ in range(3))
    _range_vol_batch(*arrs, check_length(length), gk, out, term, mean)
    return out


def parkinson(high, low, length: int = 20) -> np.ndarray:
    """Parkinson high-low volatility (per bar, not annualised).

    Formula: ``vol_t = sqrt(mean_{j<n} ln(h/l)^2 / (4 ln 2))``.

    Args:
        high: 1-D highs.
        low: 1-D lows.
        length: window ``n``.

    Returns:
        float64 array, same length, NaN for the first ``n - 1`` values of each NaN-free run.
    """
    h = as_f64(high, "high")
    return _range_vol(h, h, low, h, length, False)


def garman_klass(open, high, low, close, length: int = 20) -> np.ndarray:
    """Garman-Klass OHLC volatility (per bar, not annualised).

    Formula: ``vol_t = sqrt(mean_{j<n} [0.5 ln(h/l)^2 - (2 ln 2 - 1) ln(c/o)^2])`` (a negative
    mean, possible on tiny windows, is clipped to 0).

    Args:
        open: 1-D opens.
        high: 1-D highs.
        low: 1-D lows.
        close: 1-D closes.
        length: window ``n``.

    Returns:
        float64 array, same length, NaN for the first ``n - 1`` values of each NaN-free run.
    """
    return _range_vol(open, high, low, close, length, True)


class ParkinsonState:
    """Incremental :func:`parkinson`; ``update(high, low)``."""

    def __init__(self, length: int = 20):
        self.length = check_length(length)
        self._s = np.zeros(3 + self.length)

    def update(self, high: float, low: float) -> float:
        """Feed one bar; return the newest value (NaN during warm-up)."""
        h = float(high)
        return _range_vol_step(self._s, h, h, float(low), h, self.length, False)


class GarmanKlassState:
    """Incremental :func:`garman_klass`; ``update(open, high, low, close)``."""

    def __init__(self, length: int = 20):
        self.length = check_length(length)
        self._s = np.zeros(3 + self.length)

    def update(self, open: float, high: float, low: float, close: float) -> float:
        """Feed one bar; return the newest value (NaN during warm-up)."""
        o, h, lo, c = float(open), float(high), float(low), float(close)
        return _range_vol_step(self._s, o, h, lo, c, self.length, True)


def parkinson_ref(high, low, length: int = 20) -> np.ndarray:
    """Plain numpy spec of :func:`parkinson`."""
    h, lo = np.asarray(high, dtype=np.float64), np.asarray(low, dtype=np.float64)
    return np.sqrt(sma_ref(np.log(h / lo) ** 2 / (4 * _LN2), length))


def garman_klass_ref(open, high, low, close, length: int = 20) -> np.ndarray:
    """Plain numpy spec of :func:`garman_klass`."""
    o, h, lo, c = (np.asarray(a, dtype=np.float64) for a in (open, high, low, close))
    term = 0.5 * np.log(h / lo) ** 2 - (2 * _LN2 - 1) * np.log(c / o) ** 2
    return np.sqrt(np.maximum(sma_ref(term, length), 0.0))
