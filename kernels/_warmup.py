"""Compile (or load from numba's disk cache) every kernel before it is needed."""

from __future__ import annotations

import numpy as np


def warmup() -> None:
    """Call every batch kernel, state and the engine once on a tiny input.

    With an empty numba cache this compiles everything once (tens of seconds); afterwards
    numba's on-disk cache makes it a few seconds per process. Call it in a Ray actor's
    ``__init__`` or at service start so the first real tick does not pay the compile.
    """
    # the kernel modules, not the package: this module is imported by the package's __init__
    from types import SimpleNamespace

    import kernels.alpha158
    import kernels.changes
    import kernels.dispersion
    import kernels.moving
    import kernels.oscillators
    import kernels.rolling
    import kernels.volume
    from kernels.engine import Engine

    mods = (kernels.changes, kernels.dispersion, kernels.moving, kernels.oscillators,
            kernels.rolling, kernels.volume, kernels.alpha158)
    K = SimpleNamespace(**{k: v for m in mods for k, v in vars(m).items() if not k.startswith("_")})

    x = np.linspace(1.0, 2.0, 8)
    K.returns(x), K.log_returns(x), K.roc(x, 2), K.momentum(x, 2)
    K.sma(x, 2), K.ema(x, 2), K.wma(x, 2), K.rsi(x, 2), K.macd(x, 2, 3, 2)
    K.stoch(x, x, x, 2, 2, 2), K.atr(x, x, x, 2), K.true_range(x, x, x), K.obv(x, x)
    K.rolling_std(x, 2), K.zscore(x, 2), K.bollinger(x, 2), K.volatility(x, 2)
    K.parkinson(x, x, 2), K.garman_klass(x, x, x, x, 2)
    K.rolling_max(x, 2), K.rolling_min(x, 2), K.rolling_argmax(x, 2), K.rolling_argmin(x, 2)
    K.rolling_quantile(x, 2, 0.5), K.rolling_rank(x, 2), K.rolling_corr(x, x, 2)
    for st in (K.ReturnsState(), K.LogReturnsState(), K.RocState(), K.MomentumState(),
               K.SmaState(), K.EmaState(), K.WmaState(), K.RsiState(), K.MacdState(),
               K.RollingStdState(), K.ZscoreState(), K.BollingerState(), K.VolatilityState()):  # fmt: skip
        st.update(1.0)
    K.StochState().update(1.0, 1.0, 1.0), K.AtrState().update(1.0, 1.0, 1.0)
    K.ObvState().update(1.0, 1.0), K.ParkinsonState().update(1.0, 1.0)
    K.GarmanKlassState().update(1.0, 1.0, 1.0, 1.0)
    one = np.ones(1)
    Engine(n_tickers=1).update(one, one, one, one, one)
    if hasattr(K, "alpha158"):
        K.alpha158(x, x, x, x, x, windows=(2,))
