"""Indicator math: numpy arrays in, numpy arrays out. No I/O, no Ray, no pandas.

Each indicator family has a batch function and an incremental ``*State`` class of the same
name whose updates reproduce the batch result's last value (``rsi(close, 14)[-1] ==
RsiState(14)`` fed the same closes). Batch kernels take float64 arrays in TA-Lib's argument
order and return arrays of the same length with NaN warm-up. A plain numpy ``<name>_ref`` per
indicator is the spec the fast version is tested against.

NaN policy: a NaN in any input splits the series and every NaN-free run is treated as a fresh
series (its own warm-up). For windowed indicators that is "a NaN poisons every output whose
window contains it"; recursive ones (EMA, RSI, ATR, MACD, OBV) restart after the gap.

Modules (one family each): ``changes`` (returns), ``moving`` (SMA/EMA/WMA), ``oscillators``
(RSI, MACD, stochastic, ROC, momentum), ``dispersion`` (std, z-score, Bollinger, ATR,
volatility estimators), ``volume`` (OBV), ``rolling`` (rolling max/min/argmax/argmin, quantile,
rank, correlation), ``alpha158`` (Qlib's rolling families, built on ``rolling``), ``engine``
(vectorised incremental engine), ``catalogue`` (``CATALOGUE``, the machine-readable list). Module
names avoid the function names (``returns``, ``momentum``, ``volatility``) they would shadow.

Numba compiles each kernel on first call and caches it on disk; :func:`warmup` pays that up
front. May import: numpy, numba. Nothing from the rest of stockray.
"""

from kernels._warmup import warmup
from kernels.alpha158 import Alpha158State, alpha158
from kernels.catalogue import CATALOGUE
from kernels.changes import LogReturnsState, ReturnsState, log_returns, returns
from kernels.dispersion import (
    AtrState,
    BollingerState,
    GarmanKlassState,
    ParkinsonState,
    RollingStdState,
    VolatilityState,
    ZscoreState,
    atr,
    bollinger,
    garman_klass,
    parkinson,
    rolling_std,
    true_range,
    volatility,
    zscore,
)
from kernels.engine import Engine
from kernels.moving import EmaState, SmaState, WmaState, ema, sma, wma
from kernels.oscillators import (
    MacdState,
    MomentumState,
    RocState,
    RsiState,
    StochState,
    macd,
    momentum,
    roc,
    rsi,
    stoch,
)
from kernels.rolling import (
    rolling_argmax,
    rolling_argmin,
    rolling_corr,
    rolling_max,
    rolling_min,
    rolling_quantile,
    rolling_rank,
)
from kernels.volume import ObvState, obv

__all__ = [
    "CATALOGUE",
    "Alpha158State",
    "AtrState",
    "BollingerState",
    "EmaState",
    "Engine",
    "GarmanKlassState",
    "LogReturnsState",
    "MacdState",
    "MomentumState",
    "ObvState",
    "ParkinsonState",
    "ReturnsState",
    "RocState",
    "RollingStdState",
    "RsiState",
    "SmaState",
    "StochState",
    "VolatilityState",
    "WmaState",
    "ZscoreState",
    "alpha158",
    "atr",
    "bollinger",
    "ema",
    "garman_klass",
    "log_returns",
    "macd",
    "momentum",
    "obv",
    "parkinson",
    "returns",
    "roc",
    "rolling_argmax",
    "rolling_argmin",
    "rolling_corr",
    "rolling_max",
    "rolling_min",
    "rolling_quantile",
    "rolling_rank",
    "rolling_std",
    "rsi",
    "sma",
    "stoch",
    "true_range",
    "volatility",
    "warmup",
    "wma",
    "zscore",
]
