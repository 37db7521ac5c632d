"""Alpha158 rolling families (Qlib's ``Alpha158`` handler, rolling part) over several windows.

For each window ``d`` (default 5, 10, 20, 30, 60), with ``c`` close, ``h`` high, ``l`` low,
``v`` volume, ``r_t = c_t / c_{t-1}``, all statistics over the last ``d`` bars:

========  ================================================================================
MA        mean(c) / c_t
STD       std(c, ddof=1) / c_t
BETA      slope of c on time / c_t
RSQR      R^2 of that regression (0 for a flat window)
RESI      residual of the newest bar / c_t
MAX       max(h) / c_t;   MIN  min(l) / c_t
QTLU      quantile(c, 0.8) / c_t;   QTLD  quantile(c, 0.2) / c_t  (linear interpolation)
RANK      percentile rank of c_t in the window (ties averaged, pandas ``rank(pct=True)``)
RSV       (c_t - min(l)) / (max(h) - min(l) + 1e-12)
IMAX      (position of max(h), 1 = oldest) / d;   IMIN  same for min(l);   IMXD  IMAX - IMIN
CORR      corr(c, ln(v + 1))   (0 when either side is flat)
CORD      corr(r, ln(v_t / v_{t-1} + 1))
CNTP      mean(c_t > c_{t-1});  CNTN  mean(c_t < c_{t-1});  CNTD  CNTP - CNTN
SUMP      sum(max(dc, 0)) / (sum(|dc|) + 1e-12), dc = c_t - c_{t-1};  SUMN  the same for
          max(-dc, 0);  SUMD  SUMP - SUMN
VMA       mean(v) / (v_t + 1e-12);   VSTD  std(v, ddof=1) / (v_t + 1e-12)
WVMA      std(|r - 1| v) / (mean(|r - 1| v) + 1e-12)
========  ================================================================================

Differences from Qlib: windows must be full (Qlib uses ``min_periods=1``), so the first
``d - 1`` bars (``d`` for the families that use ``c_{t-1}``: CORD, CNT*, SUM*, WVMA) of each
NaN-free run are NaN; degenerate correlations / R^2 are 0 instead of NaN or inf.

Every value is computed from its window by the same compiled function in the batch and the
incremental :class:`Alpha158State`, so they agree exactly. MAX/MIN/IMAX/IMIN, QTLU/QTLD and
RANK use the per-window helpers of :mod:`kernels.rolling`, so ``IMAX<d> ==
(rolling_argmax(high, d) + 1) / d`` and so on, bit for bit (CORR is ``rolling_corr`` to ~1e-14:
two-pass per window here, running co-moments there).
"""

from __future__ import annotations

import math

import numpy as np

from kernels._jit import as_f64, check_length, njit, same_length
from kernels.rolling import (
    _argmax_first,
    _argmin_first,
    _corr,
    _mean,
    _quantile,
    _rank_last,
)

__all__ = ["ALPHA158_FAMILIES", "ALPHA158_WINDOWS", "Alpha158State", "alpha158", "alpha158_ref"]

ALPHA158_WINDOWS: tuple[int, ...] = (5, 10, 20, 30, 60)
ALPHA158_FAMILIES: tuple[str, ...] = (
    "MA", "STD", "BETA", "RSQR", "RESI", "MAX", "MIN", "QTLU", "QTLD", "RANK", "RSV",
    "IMAX", "IMIN", "IMXD", "CORR", "CORD", "CNTP", "CNTN", "CNTD", "SUMP", "SUMN", "SUMD",
    "VMA", "VSTD", "WVMA",
)  # fmt: skip
_NF = len(ALPHA158_FAMILIES)
_NEEDS_PREV = ("CORD", "CNTP", "CNTN", "CNTD", "SUMP", "SUMN", "SUMD", "WVMA")
_EPS = 1e-12  # Qlib's guard against division by zero, kept so values match its features


@njit
def _std1(a, m):
    q = 0.0
    for x in a:
        e = x - m
        q += e * e
    return math.sqrt(q / (a.shape[0] - 1)) if a.shape[0] > 1 else np.nan


@njit
def _window(h, lo, c, v, c_prev, v_prev, has_prev, out):
    """All families for one window. h, lo, c, v: the last d bars, oldest first; c_prev/v_prev:
    the bar before each of them (only read when has_prev). Writes _NF values into out."""
    d = c.shape[0]
    ct = c[d - 1]
    vt = v[d - 1]
    m = _mean(c)
    # regression of c on time 1..d
    xm = (d + 1) / 2.0
    sxx = d * (d * d - 1.0) / 12.0
    sxy = 0.0
    syy = 0.0
    for i in range(d):
        e = c[i] - m
        sxy += (i + 1 - xm) * e
        syy += e * e
    slope = sxy / sxx if sxx > 0.0 else 0.0
    resid = ct - (m + slope * (d - xm))
    rsq = sxy * sxy / (sxx * syy) if sxx > 0.0 and syy > 0.0 else 0.0
    ih = _argmax_first(h)
    il = _argmin_first(lo)
    hh = h[ih]
    ll = lo[il]
    srt = np.sort(c)
    lv = np.empty(d)
    for i in range(d):
        lv[i] = math.log(v[i] + 1.0)
    vm = _mean(v)
    out[0] = m / ct
    out[1] = _std1(c, m) / ct
    out[2] = slope / ct
    out[3] = rsq
    out[4] = resid / ct
    out[5] = hh / ct
    out[6] = ll / ct
    out[7] = _quantile(srt, 0.8) / ct
    out[8] = _quantile(srt, 0.2) / ct
    out[9] = _rank_last(c)
    out[10] = (ct - ll) / (hh - ll + 1e-12)
    out[11] = (ih + 1.0) / d
    out[12] = (il + 1.0) / d
    out[13] = (ih - il) / d
    out[14] = _corr(c, lv)
    out[22] = vm / (vt + 1e-12)
    out[23] = _std1(v, vm) / (vt + 1e-12)
    if not has_prev:
        for j in (15, 16, 17, 18, 19, 20, 21, 24):
            out[j] = np.nan
        return
    r = np.empty(d)
    lvr = np.empty(d)
    wv = np.empty(d)
    up = 0
    dn = 0
    sp = 0.0
    sn = 0.0
    sa = 0.0
    for i in range(d):
        r[i] = c[i] / c_prev[i]
        lvr[i] = math.log(v[i] / v_prev[i] + 1.0)
        wv[i] = abs(r[i] - 1.0) * v[i]
        dc = c[i] - c_prev[i]
        if dc > 0.0:
            up += 1
            sp += dc
        elif dc < 0.0:
            dn += 1
            sn -= dc
        sa += abs(dc)
    out[15] = _corr(r, lvr)
    out[16] = up / d
    out[17] = dn / d
    out[18] = (up - dn) / d
    out[19] = sp / (sa + 1e-12)
    out[20] = sn / (sa + 1e-12)
    out[21] = (sp - sn) / (sa + 1e-12)
    wm = _mean(wv)
    out[24] = _std1(wv, wm) / (wm + 1e-12)


@njit
def _alpha158_batch(h, lo, c, v, windows, out):
    # out: (len(windows) * _NF, n), row w * _NF + j = family j at windows[w]
    n = c.shape[0]
    row = np.empty(_NF)
    run = 0
    for t in range(n):
        if math.isnan(h[t]) or math.isnan(lo[t]) or math.isnan(c[t]) or math.isnan(v[t]):
            run = 0
        else:
            run += 1
        for w in range(windows.shape[0]):
            d = windows[w]
            if run < d:
                for j in range(_NF):
                    out[w * _NF + j, t] = np.nan
                continue
            a = t - d + 1
            has_prev = run > d
            p = a - 1 if has_prev else a  # a placeholder slice when there is no previous bar
            _window(h[a : t + 1], lo[a : t + 1], c[a : t + 1], v[a : t + 1],
                    c[p : p + d], v[p : p + d], has_prev, row)  # fmt: skip
            for j in range(_NF):
                out[w * _NF + j, t] = row[j]


def _names(windows) -> list[str]:
    return [f"{f}{d}" for d in windows for f in ALPHA158_FAMILIES]


def _windows(windows) -> np.ndarray:
    ws = [check_length(d, 2, "window") for d in windows]
    if not ws:
        raise ValueError("alpha158 needs at least one window")
    return np.asarray(ws, dtype=np.int64)


def alpha158(open, high, low, close, volume, windows=ALPHA158_WINDOWS) -> dict[str, np.ndarray]:
    """Alpha158 rolling features (see the module docstring for every formula).

    Args:
        open: 1-D opens (accepted for signature symmetry; the rolling families do not use it).
        high: 1-D highs.
        low: 1-D lows.
        close: 1-D closes.
        volume: 1-D volumes.
        windows: window lengths (each >= 2).

    Returns:
        dict ``"<FAMILY><d>"`` -> float64 array of the input's length, e.g. ``"RSQR20"``,
        ordered window-major in :data:`ALPHA158_FAMILIES` order.
    """
    h, lo, c, v = (as_f64(a, nm) for a, nm in ((high, "high"), (low, "low"), (close, "close"), (volume, "volume")))  # fmt: skip
    same_length(as_f64(open, "open"), h, lo, c, v)
    ws = _windows(windows)
    out = np.empty((ws.shape[0] * _NF, c.shape[0]))
    _alpha158_batch(h, lo, c, v, ws, out)
    return dict(zip(_names(ws), out, strict=True))


class Alpha158State:
    """Incremental :func:`alpha158`: ``update(open, high, low, close, volume)`` returns a dict
    of the newest value of every feature (a ring of the last ``max(windows) + 1`` bars)."""

    def __init__(self, windows=ALPHA158_WINDOWS):
        self.windows = _windows(windows)
        self.names = _names(self.windows)
        self._cap = int(self.windows.max()) + 1
        self._ring = np.zeros((4, self._cap))  # rows h, l, c, v; column = bar slot
        self._run = 0
        self._pos = 0
        self._row = np.empty(_NF)

    def update(self, open, high, low, close, volume) -> dict[str, float]:
        """Feed one bar; return ``{name: value}`` (NaN during each window's warm-up)."""
        bar = np.array([high, low, close, volume], dtype=np.float64)
        self._run = 0 if np.isnan(bar).any() else self._run + 1
        self._ring[:, self._pos] = bar
        self._pos = (self._pos + 1) % self._cap
        # chronological view of the ring, oldest first, newest last
        hist = np.roll(self._ring, -self._pos, axis=1)
        out = np.full(len(self.names), np.nan)
        for w, d in enumerate(self.windows):
            if self._run < d:
                continue
            has_prev = self._run > d
            cur = np.ascontiguousarray(hist[:, -d:])
            prev = np.ascontiguousarray(hist[:, -d - 1 : -1]) if has_prev else cur
            _window(cur[0], cur[1], cur[2], cur[3], prev[2], prev[3], has_prev, self._row)
            out[w * _NF : (w + 1) * _NF] = self._row
        return dict(zip(self.names, out.tolist(), strict=True))


def alpha158_ref(open, high, low, close, volume, windows=ALPHA158_WINDOWS):
    """Plain numpy spec of :func:`alpha158`: each window evaluated independently."""
    h, lo, c, v = (np.asarray(a, dtype=np.float64) for a in (high, low, close, volume))
    n = c.shape[0]
    valid = ~(np.isnan(h) | np.isnan(lo) | np.isnan(c) | np.isnan(v))
    run = np.zeros(n, dtype=int)
    for t in range(n):
        run[t] = (run[t - 1] + 1 if t else 1) if valid[t] else 0
    res = {}
    with np.errstate(divide="ignore", invalid="ignore"):  # zero volumes: inf/NaN as in batch
        for d in windows:
            res.update(_ref_window(h, lo, c, v, run, d))
    return res


def _ref_window(h, lo, c, v, run, d):
    n = c.shape[0]
    cols = {f: np.full(n, np.nan) for f in ALPHA158_FAMILIES}
    xs = np.arange(1, d + 1, dtype=np.float64)
    for t in range(n):
        if run[t] < d:
            continue
        w = slice(t - d + 1, t + 1)
        cw, hw, lw, vw = c[w], h[w], lo[w], v[w]
        ct = cw[-1]
        xc, yc = xs - xs.mean(), cw - cw.mean()
        slope = xc @ yc / (xc @ xc)
        icpt = cw.mean() - slope * xs.mean()
        resid = ct - (icpt + slope * d)
        ss = yc @ yc
        rsq = (xc @ yc) ** 2 / ((xc @ xc) * ss) if ss > 0 else 0.0
        cols["MA"][t] = cw.mean() / ct
        cols["STD"][t] = cw.std(ddof=1) / ct
        cols["BETA"][t] = slope / ct
        cols["RSQR"][t] = rsq
        cols["RESI"][t] = resid / ct
        cols["MAX"][t] = hw.max() / ct
        cols["MIN"][t] = lw.min() / ct
        cols["QTLU"][t] = np.quantile(cw, 0.8) / ct
        cols["QTLD"][t] = np.quantile(cw, 0.2) / ct
        cols["RANK"][t] = ((cw < ct).sum() + ((cw == ct).sum() + 1) / 2) / d
        cols["RSV"][t] = (ct - lw.min()) / (hw.max() - lw.min() + _EPS)
        cols["IMAX"][t] = (np.argmax(hw) + 1) / d
        cols["IMIN"][t] = (np.argmin(lw) + 1) / d
        cols["IMXD"][t] = (np.argmax(hw) - np.argmin(lw)) / d
        cols["CORR"][t] = _corr_ref(cw, np.log(vw + 1))
        cols["VMA"][t] = vw.mean() / (vw[-1] + _EPS)
        cols["VSTD"][t] = vw.std(ddof=1) / (vw[-1] + _EPS)
        if run[t] > d:
            cp, vp = c[t - d : t], v[t - d : t]
            dc = cw - cp
            r = cw / cp
            cols["CORD"][t] = _corr_ref(r, np.log(vw / vp + 1))
            cols["CNTP"][t] = (dc > 0).mean()
            cols["CNTN"][t] = (dc < 0).mean()
            cols["CNTD"][t] = (dc > 0).mean() - (dc < 0).mean()
            sa = np.abs(dc).sum() + _EPS
            cols["SUMP"][t] = np.maximum(dc, 0).sum() / sa
            cols["SUMN"][t] = np.maximum(-dc, 0).sum() / sa
            cols["SUMD"][t] = (np.maximum(dc, 0).sum() - np.maximum(-dc, 0).sum()) / sa
            wv = np.abs(r - 1) * vw
            cols["WVMA"][t] = wv.std(ddof=1) / (wv.mean() + _EPS)
    return {f"{f}{d}": cols[f] for f in ALPHA158_FAMILIES}


def _corr_ref(a, b):
    sa, sb = a.std(), b.std()
    return float(np.corrcoef(a, b)[0, 1]) if sa > 0 and sb > 0 else 0.0
