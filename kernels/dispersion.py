"""Dispersion: rolling std, z-score, Bollinger bands, ATR and rolling volatility estimators
(close-to-close, Parkinson, Garman-Klass).

Rolling mean/variance use running sums of deviations from an anchor near the window mean
(re-anchored two-pass when the mean drifts or an error budget runs out), not raw sums of ``x``
and ``x**2``: on prices near 100 with a 0.01 spread raw sums lose ~8 digits to cancellation;
the anchored sums keep the 1e-9 agreement with pandas two-pass results.
NaN policy: a NaN splits the series; each NaN-free run warms up afresh.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from kernels._jit import as_f64, by_segment, check_length, fma, njit, same_length
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


# --- rolling mean / M2 (anchored running sums) ---------------------------------------------
# Per window the kernels keep S1 = sum(x - K) and S2 = sum((x - K)^2) about an anchor K (the
# window mean at the last rebuild), slid by one add each: S1 += a - b, S2 += (a - b)(a + b)
# with a = v - K, b = old - K. Then mean = K + S1/n and M2 = S2 - S1^2/n. Raw sums of x and
# x^2 (TA-Lib) lose ~8 digits on prices near 100 with a 0.01 spread; about an anchor near the
# mean nothing cancels.
#
# Accuracy: every rounding in a slide is at most a few ulp of S2, so the error of M2 stays
# below ~20 eps * eb, eb = the sum of S2 over the slides since the rebuild; the final
# S2 - S1^2/n adds ~2 eps (S1^2/n). The window is rebuilt (two-pass: new K = its mean) unless
# eb <= _BUDGET * M2 and S1^2/n <= _ANCHOR * M2 (the mean within 100 std of K), which bounds
# M2's relative error by ~20 * 1.1e-16 * (1e5 + 1e4) ~ 2.4e-10 (std: 1.2e-10; measured worst
# 2.2e-12 against an extended-precision two-pass, test_kernels_oracle). The thresholds were
# 1e4 and 100 (bound 2e-11, measured 1.9e-13), which rebuilt 30 of AAPL's 3270 windows at
# n=20 instead of 8: a rebuild is two serial passes over the window (~200 cycles at n=20),
# 13% of STDDEV(20)'s time on AAPL. The test is written
# as "not (... <= ...)" so that a NaN (an inf that entered the window) also rebuilds, and the
# sums recover once it has left. Since S1^2/n >= 0, a window that passes has M2 >= 0.
#
# Flat windows: a rebuild of a window of identical values v sets (K, S1, S2) = (v, 0, 0)
# exactly, so the mean is v and M2 is 0 bit for bit (z-score / %b of flat minute bars take
# their defined values) and later flat bars pass the test with exact zeros. A flat window
# never passes the test with inexact sums: its true M2 is 0, so the computed M2 is at most
# the error bound 20 eps * eb << eb / _BUDGET (or eb = 0, which forces exact zeros).
#
# Rebuilds, measured on AAPL daily / a 100k-bar random walk: n=20 on 0.25% / 0.18% of bars,
# n=60 on 0.1%; n=2 rebuilds often (windows of two near-equal prices). The passing branch is
# taken otherwise, so it predicts well and the batch loop carries no other per-bar branch.
# Batch and state do the same floating-point operations in the same order (bit-identical).
_MV = 8  # state header: [run, K, S1, S2, pos, same, prev, eb], then the ring of the window
_BUDGET = 1e5  # rebuild when the sum of S2 since the last rebuild exceeds this x M2
_ANCHOR = 1e4  # ... or when (mean - K)^2 exceeds this x the population variance


@njit
def _std_value(m2, n, ddof):
    return math.sqrt(m2 * (1.0 / (n - ddof)))


@njit
def _z_value(v, m, m2, n):
    sd = _std_value(m2, n, 1)
    return (v - m) / sd if sd > 0.0 else 0.0


@njit
def _sums_of(k, s1, s2, n):
    # (K, S1, S2, M2) after a rebuild; M2 clamped at 0 (two-pass sums of a near-flat window)
    m2 = s2 - s1 * s1 * (1.0 / n)
    return k, s1, s2, max(m2, 0.0)


@njit
def _window_sums(x, i, n):
    # (K, S1, S2) of the window x[i-n+1 .. i], oldest first: exact zeros if flat (K = the
    # value), else two-pass about its mean K (S1 = sum of deviations, S2 = of their squares)
    v = x[i]
    flat = True
    for j in range(i - n + 1, i):
        flat &= x[j] == v
    if flat:
        return v, 0.0, 0.0
    t = 0.0
    for j in range(i - n + 1, i + 1):
        t += x[j]
    k = t / n
    s1 = 0.0
    s2 = 0.0
    for j in range(i - n + 1, i + 1):
        e = x[j] - k
        s1 += e
        s2 += e * e
    return k, s1, s2


@njit
def _rebuild(x, i, n):
    # (K, S1, S2, M2) of the window x[i-n+1 .. i] (a flat window gives M2 = 0 exactly)
    k, s1, s2 = _window_sums(x, i, n)
    return _sums_of(k, s1, s2, n)


@njit
def _mvar_run(x, n, mode, inv_d, kk, o1, o2, o3):
    # From x[0] (not NaN) up to the first NaN: rows of the mode's outputs (see _mvar_batch),
    # NaN while i < n - 1. Returns the index of that NaN (or len(x)). No NaN pre-scan: a NaN
    # that enters the window makes M2 NaN, which fails the accuracy test, and the rebuild
    # branch (never taken otherwise) ends the run there. sqrt and the band arithmetic are
    # fused into the loop: as a separate pass over stored (mean, M2) rows BBANDS(20) on AAPL
    # took 16.6 us against 14.5 us fused.
    m = x.shape[0]
    inv_n = 1.0 / n
    for i in range(min(n, m)):
        if math.isnan(x[i]):
            return i
        if i < n - 1:
            o1[i] = np.nan
            if mode == 3:
                o2[i] = np.nan
                o3[i] = np.nan
    if m < n:
        return m
    k, s1, s2, m2 = _rebuild(x, n - 1, n)
    eb = 0.0
    u, mean, lw = _mvar_values(mode, x[n - 1], k, s1, m2, inv_n, inv_d, kk)
    o1[n - 1] = u
    if mode == 3:
        o2[n - 1] = mean
        o3[n - 1] = lw
    # slices from 0 let LLVM drop numba's negative-index selects
    new = x[n:]
    old = x[: m - n]
    r1 = o1[n:]
    r2 = o2[n:]
    r3 = o3[n:]
    for j in range(m - n):
        a = new[j] - k
        b = old[j] - k
        d = a - b
        s1 += d
        s2 += d * (a + b)
        eb += s2
        q = s1 * s1 * inv_n
        m2 = s2 - q
        if not ((eb <= _BUDGET * m2) & (q <= _ANCHOR * m2)):
            if math.isnan(new[j]):
                return j + n
            k, s1, s2, m2 = _rebuild(x, j + n, n)
            eb = 0.0
        u, mean, lw = _mvar_values(mode, new[j], k, s1, m2, inv_n, inv_d, kk)
        r1[j] = u
        if mode == 3:
            r2[j] = mean
            r3[j] = lw
    return m


@njit
def _mvar_values(mode, v, k, s1, m2, inv_n, inv_d, kk):
    # one row of outputs from the window's sums, with the states' operations: mode 1 (std,
    # 0, 0), 2 (z-score, 0, 0), 3 (upper, mid, lower). Scalars only: a helper taking the
    # output arrays is not inlined and pays numba's refcounting on every bar (25x slower).
    if mode == 1:
        return math.sqrt(m2 * inv_d), 0.0, 0.0
    mean = k + s1 * inv_n
    if mode == 2:
        sd = math.sqrt(m2 * inv_d)
        return (v - mean) / sd if sd > 0.0 else 0.0, 0.0, 0.0
    sd = math.sqrt(m2 * inv_n)
    return mean + kk * sd, mean, mean - kk * sd


@njit
def _band_extras(x, up, mid, lo, pb, bw):
    # %b and bandwidth from the bands, as _boll_values does (vectorised: two divisions a bar)
    for i in range(x.shape[0]):
        w = up[i] - lo[i]
        pb[i] = (x[i] - lo[i]) / w if w > 0.0 else 0.5
        bw[i] = w / mid[i]


@njit
def _mvar_batch(x, n, mode, ddof, kk, out):
    # out: (1, len(x)) for mode 1 (std) and 2 (z-score); (3, len(x)) upper, mid, lower for
    # mode 3, (5, len(x)) with %b and bandwidth. One 2-D output: one allocation and one
    # argument to dispatch instead of five (0.7 us a call, 5% of BBANDS on 3k bars).
    # NaN policy: each NaN-free run is its own series.
    m = x.shape[0]
    rows = out.shape[0]
    inv_d = 1.0 / (n - ddof)
    o1 = out[0]
    o2 = out[1] if rows > 1 else o1
    o3 = out[2] if rows > 2 else o1
    i = 0
    while i < m:
        if math.isnan(x[i]):
            for r in range(rows):
                out[r, i] = np.nan
            i += 1
            continue
        stop = i + _mvar_run(x[i:], n, mode, inv_d, kk, o1[i:], o2[i:], o3[i:])
        if rows == 5:
            w = min(i + n - 1, stop)
            out[3, i:w] = np.nan
            out[4, i:w] = np.nan
            _band_extras(x[w:stop], o1[w:stop], o2[w:stop], o3[w:stop], out[3, w:stop],
                         out[4, w:stop])  # fmt: skip
        i = stop


@njit
def _ring_rebuild(s, n, pos, flat):
    # _rebuild over the ring s[_MV:_MV + n], oldest (slot `pos`) first
    if flat:
        return s[6], 0.0, 0.0, 0.0
    t = 0.0
    for j in range(n):
        p = pos + j
        if p >= n:
            p -= n
        t += s[_MV + p]
    k = t / n
    s1 = 0.0
    s2 = 0.0
    for j in range(n):
        p = pos + j
        if p >= n:
            p -= n
        e = s[_MV + p] - k
        s1 += e
        s2 += e * e
    return _sums_of(k, s1, s2, n)


@njit
def _mvar_step(s, v, n, res):
    # s = [run, K, S1, S2, pos, same, prev, eb, ring[0:n]]; res <- (mean, M2)
    res[0] = np.nan
    res[1] = np.nan
    if math.isnan(v):
        s[0] = 0.0
        return
    inv_n = 1.0 / n
    run = s[0] + 1.0
    pos = int(s[4])
    same = s[5] + 1.0 if run > 1.0 and v == s[6] else 0.0
    old = s[_MV + pos]
    s[_MV + pos] = v
    pos += 1
    if pos == n:
        pos = 0
    s[0] = run
    s[4] = pos
    s[5] = same
    s[6] = v
    if run < n:
        return
    if run == n:
        k, s1, s2, m2 = _ring_rebuild(s, n, pos, same >= n - 1)
        eb = 0.0
    else:
        k = s[1]
        a = v - k
        b = old - k
        d = a - b
        s1 = s[2] + d
        s2 = s[3] + d * (a + b)
        eb = s[7] + s2
        q = s1 * s1 * inv_n
        m2 = s2 - q
        if not ((eb <= _BUDGET * m2) & (q <= _ANCHOR * m2)):
            k, s1, s2, m2 = _ring_rebuild(s, n, pos, same >= n - 1)
            eb = 0.0
    s[1] = k
    s[2] = s1
    s[3] = s2
    s[7] = eb
    res[0] = k + s1 * inv_n
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
    out = np.empty((1, a.shape[0]))
    _mvar_batch(a, n, 1, ddof, 0.0, out)
    return out[0]


class RollingStdState:
    """Incremental :func:`rolling_std`."""

    def __init__(self, length: int = 20, ddof: int = 1):
        self.length, self.ddof = _std_args(length, ddof)
        self._s = np.zeros(_MV + self.length)
        self._res = np.empty(2)

    def update(self, x: float) -> float:
        """Feed one value; return the std of the window ending at it (NaN during warm-up)."""
        _mvar_step(self._s, float(x), self.length, self._res)
        return _std_value(self._res[1], self.length, self.ddof)


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
    out = np.empty((1, a.shape[0]))
    _mvar_batch(a, n, 2, 1, 0.0, out)
    return out[0]


class ZscoreState:
    """Incremental :func:`zscore`."""

    def __init__(self, length: int = 20):
        self.length, _ = _std_args(length, 1)
        self._s = np.zeros(_MV + self.length)
        self._res = np.empty(2)

    def update(self, x: float) -> float:
        """Feed one value; return its z-score (NaN during warm-up)."""
        _mvar_step(self._s, float(x), self.length, self._res)
        if self._s[0] < self.length:  # warm-up or a NaN bar
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
    sd = math.sqrt(m2 * (1.0 / n))
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
    if s[0] < n:  # warm-up or a NaN bar (not a NaN mean: the batch writes those through)
        for j in range(5):
            res[j] = np.nan
        return
    _boll_values(v, res[0], res[1], n, k, res)


def bollinger(close, length: int = 20, k: float = 2.0, bands_only: bool = False):
    """Bollinger bands (TA-Lib ``BBANDS`` with SMA, population std) plus %b and bandwidth.

    Formula: ``mid = sma_n``, ``sd`` = population std (ddof=0) of the window,
    ``upper/lower = mid ± k sd``, ``pct_b = (x - lower) / (upper - lower)`` (0.5 when the bands
    touch), ``bandwidth = (upper - lower) / mid``.

    Args:
        close: 1-D prices.
        length: window ``n`` (>= 1).
        k: band width in standard deviations (TA-Lib ``nbdevup = nbdevdn = k``).
        bands_only: return only ``(upper, mid, lower)``, TA-Lib's three outputs, and skip the
            two divisions and two arrays of %b and bandwidth.

    Returns:
        ``(upper, mid, lower, pct_b, bandwidth)`` float64 arrays (``(upper, mid, lower)`` with
        ``bands_only``), NaN for the first ``n - 1`` values of each NaN-free run.
    """
    x = as_f64(close, "close")
    n = check_length(length)
    # rows of one (3 or 5, len) block: one allocation (views of it are ordinary 1-D arrays)
    out = np.empty((3 if bands_only else 5, x.shape[0]))
    _mvar_batch(x, n, 3, 0, float(k), out)
    if bands_only:
        return out[0], out[1], out[2]
    return out[0], out[1], out[2], out[3], out[4]


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
    # selects rather than max(): the NaN-free path below vectorises (inputs here are never
    # NaN: the callers branch off NaN bars first)
    a = h - lo
    b = abs(prev_c - h)
    d = abs(prev_c - lo)
    m = a if a > b else b  # noqa: FURB136 (a select, so the loop vectorises)
    return m if m > d else d  # noqa: FURB136


@njit
def _atr_batch(h, lo, c, n, out):
    # NaN-free input (the usual case) takes a dense pass that also checks its own validity;
    # if that fails, the general per-bar path rewrites `out`.
    if c.shape[0] and not _atr_dense(h, lo, c, n, out):
        _atr_runs(h, lo, c, n, out, False)


@njit
def _tr_into(h, lo, c, out, start, stop):
    # out[start:stop] = true range, over slices indexed from 0 so that LLVM can prove the
    # indices non-negative (no numba wraparound selects) and vectorise. True if a NaN (or
    # inf - inf) was seen in h/lo[start:stop] or c[start-1:stop-1].
    hh = h[start:stop]
    ll = lo[start:stop]
    pc = c[start - 1 : stop - 1]
    o = out[start:stop]
    bad = False
    for i in range(stop - start):
        a = hh[i]
        b = ll[i]
        p = pc[i]
        bad |= math.isnan(a + b + p)
        o[i] = _tr(a, b, p)
    return bad


@njit
def _tr_dense(h, lo, c, out):
    out[0] = np.nan
    return _tr_into(h, lo, c, out, 1, c.shape[0])


@njit
def _tr_batch(h, lo, c, out):
    # true_range's own entry point: four array arguments (numba's dispatch costs ~0.1 us per
    # argument, a fifth of TRANGE's time on 3k bars)
    m = c.shape[0]
    if m == 0:
        return
    if _tr_dense(h, lo, c, out) or math.isnan(h[0] + lo[0] + c[m - 1]):
        _atr_runs(h, lo, c, 1, out, True)


# Wilder's recursion a_k = a_{k-1} (n-1)/n + tr_k / n is one serial chain. Written as
# fma(a, c1, u) (u = tr / n) it costs one 4-cycle FMA per bar, the form TA-Lib 0.6 runs (its
# ATR: 120 us per 100k bars, ours 142 us that way). Bars are therefore taken in pairs after the
# seed (k = 0): odd k: a_k = fma(a_{k-1}, c1, u_k); even k: a_k = fma(a_{k-2}, c1^2,
# fma(u_{k-1}, c1, u_k)), so the chain advances one FMA per two bars. The odd value hangs off
# the chain; both differ from the one-step form by an ulp or so, and _atr_step does the same.
@njit
def _tr_ordered(h, lo, pc):
    # == _tr(h, lo, pc) bit for bit when h >= lo (each case picks the same difference), in
    # 3 ops instead of 7; a NaN close propagates (the select returns its second operand).
    hi = h if h > pc else pc  # noqa: FURB136 (a NaN pc must come out, see above)
    low = lo if lo < pc else pc  # noqa: FURB136
    return hi - low


@njit
def _atr_dense(h, lo, c, n, out):
    # One pass, the true range computed inline. Valid only when every h >= lo (which also
    # rules out NaN highs/lows) and every close is finite: the first is checked bar by bar,
    # the second through the chain (a NaN or inf close makes every later `a` non-finite).
    # False if that does not hold; the caller then takes the per-bar path.
    m = c.shape[0]
    if math.isnan(h[0]) or math.isnan(lo[0]) or not math.isfinite(c[m - 1]):
        return False
    ok = True
    c1 = (n - 1.0) / n
    c2 = 1.0 / n
    c1sq = c1 * c1
    a = 0.0
    out[0] = np.nan
    for i in range(1, min(n, m)):
        ok &= h[i] >= lo[i]
        a += _tr_ordered(h[i], lo[i], c[i - 1])
        out[i] = np.nan
    if m <= n:
        return ok and math.isfinite(a)
    ok &= h[n] >= lo[n]
    a = (a + _tr_ordered(h[n], lo[n], c[n - 1])) / n
    out[n] = a
    hh = h[n + 1 :]
    ll = lo[n + 1 :]
    pc = c[n : m - 1]
    o = out[n + 1 :]
    rest = m - n - 1
    j = 0
    while j + 1 < rest:
        h1 = hh[j]
        l1 = ll[j]
        h2 = hh[j + 1]
        l2 = ll[j + 1]
        ok &= (h1 >= l1) & (h2 >= l2)
        u1 = _tr_ordered(h1, l1, pc[j]) * c2
        u2 = _tr_ordered(h2, l2, pc[j + 1]) * c2
        o[j] = fma(a, c1, u1)
        a = fma(a, c1sq, fma(u1, c1, u2))
        o[j + 1] = a
        j += 2
    if j < rest:
        ok &= hh[j] >= ll[j]
        o[j] = fma(a, c1, _tr_ordered(hh[j], ll[j], pc[j]) * c2)
        ok &= math.isfinite(o[j])
    return ok and math.isfinite(a)


@njit
def _atr_runs(h, lo, c, n, out, tr_only):
    # general path: the NaN policy, one bar at a time (the same operations as _atr_step)
    c1 = (n - 1.0) / n
    c2 = 1.0 / n
    c1sq = c1 * c1
    run = 0
    a = 0.0
    up = 0.0
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
        elif (run - n) % 2 == 0:  # odd k = run - n - 1
            up = tr * c2
            out[i] = fma(a, c1, up)
        else:
            a = fma(a, c1sq, fma(up, c1, tr * c2))
            out[i] = a


@njit
def _atr_step(s, h, lo, c, n):
    # s = [run, prev_close, a (warm-up sum, then the even-k anchor), u of the last odd k]
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
    c1 = (n - 1.0) / n
    c2 = 1.0 / n
    if run <= n:
        s[2] = a + tr
        return np.nan
    if run == n + 1:
        a = (a + tr) / n
        s[2] = a
        return a
    if (run - n) % 2 == 0:
        up = tr * c2
        s[3] = up
        return fma(a, c1, up)
    a = fma(a, c1 * c1, fma(s[3], c1, tr * c2))
    s[2] = a
    return a


def atr(high, low, close, length: int = 14) -> np.ndarray:
    """Average true range with Wilder smoothing (TA-Lib ``ATR``).

    Formula: ``tr_t = max(h_t - l_t, |h_t - c_{t-1}|, |l_t - c_{t-1}|)``; ``atr`` = mean of the
    first ``n`` true ranges, then ``atr_t = atr_{t-1} (n - 1) / n + tr_t / n`` (evaluated two
    bars per fused step, see the note above ``_atr_dense``).

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
    _atr_batch(h, lo, c, check_length(length), out)
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
    _tr_batch(h, lo, c, out)
    return out


class AtrState:
    """Incremental :func:`atr`; ``update(high, low, close)``."""

    def __init__(self, length: int = 14):
        self.length = check_length(length)
        self._s = np.zeros(4)

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
        out = _std_value(self._res[1], self.length, 1)
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
