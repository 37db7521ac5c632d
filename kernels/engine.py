"""Vectorised incremental engine: one call updates every feature of every ticker.

The minute-bar stream holds one :class:`Engine` with state for all tickers; ``update`` takes
one bar per ticker (arrays of shape ``(n_tickers,)``) and returns ``(n_tickers, n_columns)``.
Each feature runs the same ``_<name>_step`` function as its ``*State`` class, so column ``j``
after ``T`` ticks equals the batch indicator's value at ``T - 1`` bit for bit (tested).

State is one float64 matrix ``(n_tickers, state_width)``: per ticker, each feature owns a
contiguous slice (counters, sums, ring buffers). ``get_state`` / ``set_state`` snapshot it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kernels._jit import check_length, njit
from kernels.changes import _returns_step
from kernels.dispersion import (
    _MV,
    _atr_step,
    _boll_step,
    _mvar_step,
    _range_vol_step,
    _std_value,
    _z_value,
)
from kernels.moving import _ema_step, _sma_step, _wma_step
from kernels.oscillators import _macd_step, _rsi_step, _stoch_step
from kernels.volume import _obv_step

__all__ = ["DEFAULT_FEATURES", "Engine", "FeatureSpec", "parse_feature"]

# kind codes used inside the compiled tick function
_RETURNS, _LOGRET, _ROC, _MOM = 0, 1, 2, 3
_SMA, _EMA, _WMA = 4, 5, 6
_RSI, _MACD, _STOCH = 7, 8, 9
_STD, _ZSCORE, _BOLL, _ATR, _VOL, _PARK, _GK = 10, 11, 12, 13, 14, 15, 16
_OBV = 17

# name -> (kind, parameter names with defaults, output column suffixes)
_KINDS: dict[str, tuple[int, tuple[tuple[str, float], ...], tuple[str, ...]]] = {
    "returns": (_RETURNS, (("periods", 1),), ("",)),
    "log_returns": (_LOGRET, (("periods", 1),), ("",)),
    "roc": (_ROC, (("length", 10),), ("",)),
    "momentum": (_MOM, (("length", 10),), ("",)),
    "sma": (_SMA, (("length", 30),), ("",)),
    "ema": (_EMA, (("length", 30),), ("",)),
    "wma": (_WMA, (("length", 30),), ("",)),
    "rsi": (_RSI, (("length", 14),), ("",)),
    "macd": (_MACD, (("fast", 12), ("slow", 26), ("signal", 9)), ("_line", "_signal", "_hist")),
    "stoch": (
        _STOCH,
        (("fastk_period", 5), ("slowk_period", 3), ("slowd_period", 3)),
        ("_k", "_d"),
    ),
    "rolling_std": (_STD, (("length", 20),), ("",)),
    "zscore": (_ZSCORE, (("length", 20),), ("",)),
    "bollinger": (
        _BOLL,
        (("length", 20), ("k", 2.0)),
        ("_upper", "_mid", "_lower", "_pct_b", "_bandwidth"),
    ),
    "atr": (_ATR, (("length", 14),), ("",)),
    "volatility": (_VOL, (("length", 20),), ("",)),
    "parkinson": (_PARK, (("length", 20),), ("",)),
    "garman_klass": (_GK, (("length", 20),), ("",)),
    "obv": (_OBV, (), ("",)),
}


@dataclass(frozen=True)
class FeatureSpec:
    """One engine feature: an indicator name and its parameters (in the batch call's order).

    ``FeatureSpec("macd", (12, 26, 9))`` produces the columns ``macd_12_26_9_line``,
    ``..._signal`` and ``..._hist``, equal to ``kernels.macd(close, 12, 26, 9)``.
    """

    name: str
    params: tuple[float, ...] = ()

    @property
    def columns(self) -> list[str]:
        """Output column names of this feature, in order."""
        _, _, suffixes = _KINDS[self.name]
        tag = "_".join(_fmt(p) for p in self.params)
        base = f"{self.name}_{tag}" if tag else self.name
        return [base + s for s in suffixes]


def _fmt(p: float) -> str:
    return str(int(p)) if float(p).is_integer() else str(p)


def parse_feature(text: str) -> FeatureSpec:
    """Parse ``"name"`` or ``"name:p1:p2"`` (e.g. ``"rsi:14"``, ``"macd:12:26:9"``).

    Missing trailing parameters take the batch function's defaults.

    Raises:
        ValueError: unknown indicator or too many parameters.
    """
    name, *raw = text.split(":")
    if name not in _KINDS:
        raise ValueError(f"unknown engine feature {name!r}; known: {sorted(_KINDS)}")
    defaults = _KINDS[name][1]
    if len(raw) > len(defaults):
        raise ValueError(f"{name} takes at most {len(defaults)} parameters, got {text!r}")
    params = [float(r) for r in raw] + [d for _, d in defaults[len(raw) :]]
    return FeatureSpec(name, tuple(params))


# 40 columns: the default minute-bar feature set and the engine benchmark's workload.
DEFAULT_FEATURES: tuple[str, ...] = (
    "returns:1", "log_returns:1", "log_returns:5", "roc:10", "roc:20", "momentum:10",
    "sma:5", "sma:10", "sma:20", "sma:30", "sma:60", "ema:5", "ema:10", "ema:20", "ema:30",
    "ema:60", "wma:10", "wma:20", "rsi:6", "rsi:14", "macd:12:26:9", "stoch:5:3:3",
    "rolling_std:20", "rolling_std:60", "zscore:20", "zscore:60", "bollinger:20:2", "atr:14",
    "volatility:20", "volatility:60", "parkinson:20", "garman_klass:20", "obv",
)  # fmt: skip


def _state_size(kind: int, p: tuple[float, ...]) -> int:
    n = int(p[0]) if p else 0
    if kind in (_RETURNS, _LOGRET, _ROC, _MOM):
        return 2 + n
    if kind in (_SMA, _PARK, _GK):
        return 3 + n
    if kind == _WMA:
        return 4 + n
    if kind in (_EMA,):
        return 2
    if kind in (_RSI, _MACD):
        return 4
    if kind == _STOCH:
        return 4 + 2 * int(p[0]) + int(p[1]) + int(p[2])
    if kind in (_STD, _ZSCORE, _BOLL):
        return _MV + n
    if kind == _VOL:
        return 3 + _MV + n
    if kind == _ATR:
        return 4
    if kind == _OBV:
        return 4
    raise AssertionError(kind)


@njit
def _engine_tick(st, kind, ip, fp, soff, ooff, o, h, lo, c, v, out, res):
    n_tick = st.shape[0]
    n_feat = kind.shape[0]
    for t in range(n_tick):
        ot, ht, lt, ct, vt = o[t], h[t], lo[t], c[t], v[t]
        for f in range(n_feat):
            s = st[t, soff[f] : soff[f + 1]]
            k = kind[f]
            j = ooff[f]
            p0 = ip[f, 0]
            if k <= _MOM:
                out[t, j] = _returns_step(s, ct, p0, k)
            elif k == _SMA:
                out[t, j] = _sma_step(s, ct, p0)
            elif k == _EMA:
                out[t, j] = _ema_step(s, ct, p0, fp[f, 0])
            elif k == _WMA:
                out[t, j] = _wma_step(s, ct, p0)
            elif k == _RSI:
                out[t, j] = _rsi_step(s, ct, p0)
            elif k == _MACD:
                _macd_step(s, ct, p0, ip[f, 1], ip[f, 2], fp[f, 0], fp[f, 1], fp[f, 2], res)
                for q in range(3):
                    out[t, j + q] = res[q]
            elif k == _STOCH:
                _stoch_step(s, ht, lt, ct, p0, ip[f, 1], ip[f, 2], res)
                out[t, j] = res[0]
                out[t, j + 1] = res[1]
            elif k == _STD:
                _mvar_step(s, ct, p0, res)
                out[t, j] = _std_value(res[1], p0, 1)
            elif k == _ZSCORE:
                _mvar_step(s, ct, p0, res)
                out[t, j] = np.nan if s[0] < p0 else _z_value(ct, res[0], res[1], p0)
            elif k == _BOLL:
                _boll_step(s, ct, p0, fp[f, 1], res)
                for q in range(5):
                    out[t, j + q] = res[q]
            elif k == _ATR:
                out[t, j] = _atr_step(s, ht, lt, ct, p0)
            elif k == _VOL:
                r = _returns_step(s[:3], ct, 1, 1)
                _mvar_step(s[3:], r, p0, res)
                out[t, j] = _std_value(res[1], p0, 1)
            elif k == _PARK:
                out[t, j] = _range_vol_step(s, ht, ht, lt, ht, p0, False)
            elif k == _GK:
                out[t, j] = _range_vol_step(s, ot, ht, lt, ct, p0, True)
            else:
                out[t, j] = _obv_step(s, ct, vt)


class Engine:
    """Incremental indicators for many tickers at once.

    Args:
        features: feature strings (``"rsi:14"``) or :class:`FeatureSpec`; default
            :data:`DEFAULT_FEATURES` (40 columns).
        n_tickers: number of tickers; ticker ``i`` is row ``i`` of every input and output.

    Example:
        >>> eng = Engine(["sma:3", "rsi:2"], n_tickers=2)
        >>> eng.columns
        ['sma_3', 'rsi_2']
    """

    def __init__(self, features=DEFAULT_FEATURES, n_tickers: int = 1):
        self.n_tickers = check_length(n_tickers, 1, "n_tickers")
        specs = [f if isinstance(f, FeatureSpec) else parse_feature(f) for f in features]
        if not specs:
            raise ValueError("Engine needs at least one feature")
        self.specs = specs
        self.columns: list[str] = [c for s in specs for c in s.columns]
        if len(set(self.columns)) != len(self.columns):
            raise ValueError(f"duplicate engine features in {features!r}")
        nf = len(specs)
        self._kind = np.empty(nf, dtype=np.int64)
        self._ip = np.zeros((nf, 3), dtype=np.int64)
        self._fp = np.zeros((nf, 3), dtype=np.float64)
        soff, ooff = [0], []
        for i, s in enumerate(specs):
            kind = _KINDS[s.name][0]
            self._kind[i] = kind
            self._validate(s)
            for q, p in enumerate(s.params):
                self._ip[i, q] = int(p)
                self._fp[i, q] = float(p)
            if kind == _EMA:
                self._fp[i, 0] = 2.0 / (s.params[0] + 1.0)
            elif kind == _MACD:
                self._fp[i] = [2.0 / (p + 1.0) for p in s.params]
            soff.append(soff[-1] + _state_size(kind, s.params))
            ooff.append(sum(len(x.columns) for x in specs[:i]))
        self._soff = np.asarray(soff, dtype=np.int64)
        self._ooff = np.asarray(ooff, dtype=np.int64)
        self._state = np.zeros((self.n_tickers, soff[-1]))
        self._res = np.empty(5)

    @staticmethod
    def _validate(s: FeatureSpec) -> None:
        if any(p != int(p) or p < 1 for p in s.params[:3] if s.name != "bollinger"):
            raise ValueError(f"{s.name} parameters must be integers >= 1, got {s.params}")
        if s.name in ("rolling_std", "zscore", "volatility") and s.params[0] < 2:
            raise ValueError(f"{s.name} needs length >= 2, got {s.params[0]}")
        if s.name == "bollinger" and (s.params[0] != int(s.params[0]) or s.params[0] < 1):
            raise ValueError(f"bollinger length must be an integer >= 1, got {s.params[0]}")
        if s.name == "macd" and s.params[0] > s.params[1]:
            raise ValueError(f"macd needs fast <= slow, got {s.params}")

    def update(self, open=None, high=None, low=None, close=None, volume=None, rows=None
               ) -> np.ndarray:
        """Feed one bar per ticker; return the newest value of every column.

        With ``rows`` (integer indices), only those tickers get a bar: inputs and output have
        ``len(rows)`` entries and every other ticker's state is untouched (a minute batch
        where only some tickers printed; a NaN close would instead reset a ticker).

        Args:
            open: ``(n_tickers,)`` opens (needed by garman_klass; defaults to close).
            high: ``(n_tickers,)`` highs (stoch, atr, parkinson, garman_klass; default close).
            low: ``(n_tickers,)`` lows (default close).
            close: ``(n_tickers,)`` closes (required). NaN = no bar: that ticker's features
                reset, exactly as the batch kernels' NaN policy.
            volume: ``(n_tickers,)`` volumes (obv; default 0).
            rows: indices of the tickers these bars belong to (unique); default all.

        Returns:
            ``(n, len(columns))`` float64 (``n`` = n_tickers or len(rows)), NaN during each
            feature's warm-up.
        """
        if close is None:
            raise ValueError("Engine.update needs close")
        n = self.n_tickers
        if rows is not None:
            rows = np.asarray(rows, dtype=np.int64)
            if rows.ndim != 1 or len(np.unique(rows)) != len(rows):
                raise ValueError("rows must be unique ticker indices")
            if len(rows) and (rows.min() < 0 or rows.max() >= n):
                raise ValueError(f"rows must lie in [0, {n}), got {rows.min()}..{rows.max()}")
            n = len(rows)
        c = self._vec(close, "close", n)
        o = c if open is None else self._vec(open, "open", n)
        h = c if high is None else self._vec(high, "high", n)
        lo = c if low is None else self._vec(low, "low", n)
        v = np.zeros_like(c) if volume is None else self._vec(volume, "volume", n)
        out = np.empty((n, len(self.columns)))
        # Fancy indexing copies: tick the gathered rows, then scatter them back.
        st = self._state if rows is None else self._state[rows]
        _engine_tick(
            st, self._kind, self._ip, self._fp, self._soff, self._ooff,
            o, h, lo, c, v, out, self._res,
        )  # fmt: skip
        if rows is not None:
            self._state[rows] = st
        return out

    def _vec(self, x, name: str, n: int) -> np.ndarray:
        a = np.ascontiguousarray(x, dtype=np.float64)
        if a.shape != (n,):
            raise ValueError(f"{name} must have shape ({n},), got {a.shape}")
        return a

    def reset(self, tickers=None) -> None:
        """Forget the history of ``tickers`` (indices or bool mask; default all)."""
        if tickers is None:
            self._state[:] = 0.0
        else:
            self._state[tickers] = 0.0

    def add_tickers(self, n: int) -> None:
        """Append ``n`` tickers with fresh (empty) state as rows ``n_tickers..n_tickers+n-1``."""
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        self._state = np.vstack([self._state, np.zeros((n, self._state.shape[1]))])
        self.n_tickers += n

    def get_state(self) -> np.ndarray:
        """A copy of the state matrix ``(n_tickers, state_width)`` (for checkpoints)."""
        return self._state.copy()

    def set_state(self, state: np.ndarray) -> None:
        """Restore a matrix from :meth:`get_state` of an engine with the same features."""
        state = np.asarray(state, dtype=np.float64)
        if state.shape != self._state.shape:
            raise ValueError(f"state must have shape {self._state.shape}, got {state.shape}")
        self._state[:] = state
