"""Machine-readable feature catalogue: one dict per indicator, for docs and feature registries.

``CATALOGUE`` entries: ``name`` (the batch function in ``kernels``), ``family`` (module),
``state`` (incremental class), ``inputs``, ``params`` (defaults, in call order), ``outputs``,
``formula``, ``talib`` (the TA-Lib function it matches, or None), ``windows`` (Alpha158 only).
Only JSON types, so ``json.dumps(CATALOGUE)`` works and the README table is generated from it.
"""

from __future__ import annotations

from kernels.alpha158 import ALPHA158_FAMILIES, ALPHA158_WINDOWS

__all__ = ["CATALOGUE"]


def _e(name, family, state, inputs, params, outputs, formula, talib=None, **extra):
    return {
        "name": name,
        "family": family,
        "state": state,
        "inputs": list(inputs),
        "params": dict(params),
        "outputs": list(outputs),
        "formula": formula,
        "talib": talib,
        **extra,
    }


CATALOGUE: list[dict] = [
    _e("returns", "changes", "ReturnsState", ["close"], {"periods": 1}, ["returns"],
       "c_t / c_{t-p} - 1"),
    _e("log_returns", "changes", "LogReturnsState", ["close"], {"periods": 1}, ["log_returns"],
       "ln(c_t / c_{t-p})"),
    _e("sma", "moving", "SmaState", ["close"], {"length": 30}, ["sma"],
       "mean(x_{t-n+1..t})", "SMA"),
    _e("ema", "moving", "EmaState", ["close"], {"length": 30, "alpha": None}, ["ema"],
       "seed mean(x_0..x_{n-1}); ema_t = (1-k) ema_{t-1} + k x_t, k = 2/(n+1)", "EMA"),
    _e("wma", "moving", "WmaState", ["close"], {"length": 30}, ["wma"],
       "sum_j (n-j) x_{t-j} / (n(n+1)/2)", "WMA"),
    _e("rsi", "oscillators", "RsiState", ["close"], {"length": 14}, ["rsi"],
       "100 G/(G+L), Wilder-smoothed gains G and losses L (50 if G+L=0)", "RSI"),
    _e("macd", "oscillators", "MacdState", ["close"], {"fast": 12, "slow": 26, "signal": 9},
       ["line", "signal", "hist"],
       "line = ema_fast - ema_slow (TA-Lib seeding); signal = ema_signal(line); hist = line - signal",
       "MACD"),
    _e("stoch", "oscillators", "StochState", ["high", "low", "close"],
       {"fastk_period": 5, "slowk_period": 3, "slowd_period": 3}, ["k", "d"],
       "fastK = 100 (c - LL)/(HH - LL); %K = sma(fastK); %D = sma(%K)", "STOCH"),
    _e("roc", "oscillators", "RocState", ["close"], {"length": 10}, ["roc"],
       "100 (c_t / c_{t-n} - 1)", "ROC"),
    _e("momentum", "oscillators", "MomentumState", ["close"], {"length": 10}, ["momentum"],
       "c_t - c_{t-n}", "MOM"),
    _e("rolling_std", "dispersion", "RollingStdState", ["close"], {"length": 20, "ddof": 1},
       ["std"], "sqrt(sum (x - mean)^2 / (n - ddof)) over the window", "STDDEV"),
    _e("zscore", "dispersion", "ZscoreState", ["close"], {"length": 20}, ["zscore"],
       "(x_t - mean) / std_ddof1 over the window (0 if flat)"),
    _e("bollinger", "dispersion", "BollingerState", ["close"], {"length": 20, "k": 2.0},
       ["upper", "mid", "lower", "pct_b", "bandwidth"],
       "mid = sma; upper/lower = mid ± k std_ddof0; pct_b = (x - lower)/(upper - lower); "
       "bandwidth = (upper - lower)/mid", "BBANDS"),
    _e("true_range", "dispersion", None, ["high", "low", "close"], {}, ["tr"],
       "max(h - l, |h - c_{t-1}|, |l - c_{t-1}|)", "TRANGE"),
    _e("atr", "dispersion", "AtrState", ["high", "low", "close"], {"length": 14}, ["atr"],
       "Wilder average of the true range", "ATR"),
    _e("volatility", "dispersion", "VolatilityState", ["close"],
       {"length": 20, "periods_per_year": None}, ["volatility"],
       "std_ddof1 of ln(c_t/c_{t-1}) over n returns, times sqrt(periods_per_year)"),
    _e("parkinson", "dispersion", "ParkinsonState", ["high", "low"], {"length": 20},
       ["volatility"], "sqrt(mean(ln(h/l)^2) / (4 ln 2))"),
    _e("garman_klass", "dispersion", "GarmanKlassState", ["open", "high", "low", "close"],
       {"length": 20}, ["volatility"],
       "sqrt(mean(0.5 ln(h/l)^2 - (2 ln 2 - 1) ln(c/o)^2))"),
    _e("obv", "volume", "ObvState", ["close", "volume"], {}, ["obv"],
       "obv_0 = v_0; obv_t = obv_{t-1} + sign(c_t - c_{t-1}) v_t", "OBV"),
    _e("rolling_max", "rolling", None, ["x"], {"length": 30}, ["max"],
       "max(x_{t-n+1..t})", "MAX"),
    _e("rolling_min", "rolling", None, ["x"], {"length": 30}, ["min"],
       "min(x_{t-n+1..t})", "MIN"),
    _e("rolling_argmax", "rolling", None, ["x"], {"length": 30}, ["argmax"],
       "position of max(x_{t-n+1..t}) in the window, 0 = oldest, oldest on ties"),
    _e("rolling_argmin", "rolling", None, ["x"], {"length": 30}, ["argmin"],
       "position of min(x_{t-n+1..t}) in the window, 0 = oldest, oldest on ties"),
    _e("rolling_quantile", "rolling", None, ["x"], {"length": 30, "q": 0.5}, ["quantile"],
       "q-quantile of the window, linear interpolation"),
    _e("rolling_rank", "rolling", None, ["x"], {"length": 30}, ["rank"],
       "(#{x_j < x_t} + (#{x_j = x_t} + 1)/2) / n over the window"),
    _e("rolling_corr", "rolling", None, ["x", "y"], {"length": 30}, ["corr"],
       "Pearson corr of the two windows (0 if either is flat)", "CORREL"),
    _e("alpha158", "alpha158", "Alpha158State", ["open", "high", "low", "close", "volume"],
       {"windows": list(ALPHA158_WINDOWS)}, [f"{f}<d>" for f in ALPHA158_FAMILIES],
       "Qlib Alpha158 rolling families; formulas in kernels.alpha158",
       windows=list(ALPHA158_WINDOWS), families=list(ALPHA158_FAMILIES)),
]  # fmt: skip
