"""Feature and label computation: per-ticker kernels, market regime, calendar, macro by release
date, cross-sectional ranks, and forward labels.

Every feature at row ``ts`` is computed from data known at or before ``ts`` only: the kernels
are causal (each output uses its window ending at the same index), market features are joined
as of ``ts``, macro series as of their *release* time (``features.macro``), and cross-sectional
ranks compare tickers on the same date. Labels look forward and live in a separate table that
is never served online. ``tests/unit/test_pipeline.py`` shocks the future and checks every
past feature stays bit-for-bit equal.

Prices are split/dividend-adjusted with ``adj_factor`` (``adj_close / close``); volume is
adjusted the opposite way (``volume / adj_factor``) so dollar volume is unchanged and a split
does not look like a volume shock. ``adj_factor`` also carries dividends, so adjusted volume is
off by the cumulative dividend yield (a slow drift of a few % a year, invisible to 20-day
z-scores); a split is a jump in the factor, which this removes.

Engine: ``stockray features`` runs ``features.stream``: the per-ticker function over chunks
of tickers (in this process or as Ray Data tasks, :func:`choose_engine` by row count,
:data:`RAY_MIN_ROWS`, measured in ``bench/features.py``) written to disk, and
:func:`add_cross_sectional`'s ranks recomputed out of core by DuckDB, so memory stays within a
budget. ``build_features_local`` is the same computation on one in-memory frame (small panels:
the skfolio research universe, tests), tested equal to the streamed tables.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

import kernels as K
from features.macro import MACRO_FEATURES, join_macro, macro_releases
from features.sources import MARKET_TICKER

HORIZONS = (1, 5, 20)
#: Regression targets: forward log returns of the adjusted close.
LABEL_COLUMNS = [f"fwd_ret_{h}d" for h in HORIZONS]
#: Classification targets: 1.0 if the forward return is > 0, 0.0 if <= 0, NaN if unknown.
DIRECTION_COLUMNS = [f"fwd_dir_{h}d" for h in HORIZONS]
ALL_LABEL_COLUMNS = LABEL_COLUMNS + DIRECTION_COLUMNS

#: Feature families; each is one Feast feature view (``features.feature_repo.definitions``).
FAMILIES = ("technical", "market", "calendar", "cross_sectional", "macro")


@dataclass(frozen=True)
class FeatureSpec:
    """One served feature: column name, formula, window (bars), source data, family, kernel."""

    name: str
    formula: str
    source: str = "bars"
    family: str = "technical"
    window: str = ""
    kernel: str | None = None  # the ``kernels.CATALOGUE`` entry it is built on


def _t(name, formula, window, kernel=None):
    return FeatureSpec(name, formula, "bars (adjusted OHLCV)", "technical", window, kernel)


def _m(name, formula, window, kernel=None):
    return FeatureSpec(name, formula, "S&P 500 index (^GSPC)", "market", window, kernel)


FEATURES: tuple[FeatureSpec, ...] = (
    # -- technical: one ticker's own adjusted bars
    _t("ret_1d", "ln(c_t / c_{t-1})", "1", "log_returns"),
    _t("ret_5d", "ln(c_t / c_{t-5})", "5", "log_returns"),
    _t("ret_20d", "ln(c_t / c_{t-20})", "20", "log_returns"),
    _t("sma_ratio_10", "c / SMA(c, 10) - 1", "10", "sma"),
    _t("sma_ratio_50", "c / SMA(c, 50) - 1", "50", "sma"),
    _t("ema_ratio_12_26", "EMA(c, 12) / EMA(c, 26) - 1", "26", "ema"),
    _t("rsi_14", "Wilder RSI(c, 14)", "14", "rsi"),
    _t("macd_hist_norm", "MACD histogram(12, 26, 9) / c", "34", "macd"),
    _t("bb_pctb_20", "Bollinger %b(c, 20, 2)", "20", "bollinger"),
    _t("atr_norm_14", "ATR(h, l, c, 14) / c", "14", "atr"),
    _t("vol_20", "std_ddof1 of 1-day log returns", "20", "volatility"),
    _t("volume_z_20", "z-score of ln(1 + adjusted volume)", "20", "zscore"),
    _t("stoch_k_14", "slow stochastic %K(14, 3) in [0, 100]", "16", "stoch"),
    _t("stoch_d_14", "slow stochastic %D(14, 3, 3)", "18", "stoch"),
    _t("roc_10", "100 (c_t / c_{t-10} - 1)", "10", "roc"),
    _t("obv_chg_20", "(OBV_t - OBV_{t-20}) / sum(adjusted volume, 20), in [-1, 1]", "20", "obv"),
    _t("parkinson_20", "Parkinson range volatility sqrt(mean(ln(h/l)^2) / (4 ln 2))", "20",
       "parkinson"),
    _t("garman_klass_20", "Garman-Klass OHLC volatility", "20", "garman_klass"),
    _t("a158_rsqr_20", "Alpha158 RSQR20: R^2 of close on time", "20", "alpha158"),
    _t("a158_resi_20", "Alpha158 RESI20: newest residual of that fit / c", "20", "alpha158"),
    _t("a158_corr_20", "Alpha158 CORR20: corr(c, ln(v + 1))", "20", "alpha158"),
    _t("a158_cord_20", "Alpha158 CORD20: corr(c_t/c_{t-1}, ln(v_t/v_{t-1} + 1))", "20",
       "alpha158"),
    _t("a158_cntd_20", "Alpha158 CNTD20: share of up days - share of down days", "20",
       "alpha158"),
    _t("a158_sumd_20", "Alpha158 SUMD20: (gains - losses) / total absolute move", "20",
       "alpha158"),
    _t("a158_imxd_20", "Alpha158 IMXD20: (argmax(h) - argmin(l)) / 20", "20", "alpha158"),
    # -- market: the S&P 500's trend and volatility regime, as of ts
    _m("mkt_ret_1d", "index ln(c_t / c_{t-1})", "1", "log_returns"),
    _m("mkt_ret_5d", "index ln(c_t / c_{t-5})", "5", "log_returns"),
    _m("mkt_vol_20", "index std of 1-day log returns", "20", "volatility"),
    _m("mkt_trend_200", "index c / SMA(c, 200) - 1", "200", "sma"),
    _m("mkt_trend_regime", "+1 if c >= SMA200 and SMA50 >= SMA200 (bull), -1 if c < SMA200 "
       "and SMA50 < SMA200 (bear), else 0 (transition)", "200", "sma"),
    _m("mkt_vol_pct_252", "percentile of mkt_vol_20_t among its last 252 values (at least 60),"
       " in (0, 1]", "80..272", "volatility"),
    _m("mkt_vol_regime", "0 if mkt_vol_pct_252 < 1/3 (calm), 1 if < 2/3, else 2 (stressed)",
       "80..272"),
    # -- calendar and trading-calendar gaps
    FeatureSpec("day_of_week", "weekday of ts, Monday = 0", "ts", "calendar", "0"),
    FeatureSpec("month", "month of ts, 1..12", "ts", "calendar", "0"),
    FeatureSpec("days_to_month_end", "calendar days left in the month of ts", "ts", "calendar",
                "0"),
    FeatureSpec("gap_days", "calendar days since this ticker's previous bar (3 over a weekend)",
                "ticker's ts", "calendar", "1"),
    FeatureSpec("missed_sessions", "weekdays strictly between the previous bar and this one "
                "(1 after a holiday, more: missing data)", "ticker's ts", "calendar", "1"),
    # -- cross-sectional: rank among every ticker with a value on the same date
    *(FeatureSpec(f"cs_rank_{b}", f"(rank({b}) - 1) / (n - 1) across tickers on ts, in [0, 1] "
                  "(0.5 if n = 1)", "all tickers' features on ts", "cross_sectional", "0")
      for b in ("ret_1d", "ret_5d", "ret_20d", "vol_20", "volume_z_20")),
    # -- macro: as of the release date, with the publication lag of features.macro
    FeatureSpec("core_cpi_yoy", "ln(CPI_M / CPI_{M-12}), core CPI (CPILFESL)",
                "arch.data.core_cpi, released M+1 day 20", "macro", "12 months"),
    FeatureSpec("core_cpi_3m_ann", "4 ln(CPI_M / CPI_{M-3})", "arch.data.core_cpi, released "
                "M+1 day 20", "macro", "3 months"),
    FeatureSpec("default_spread", "BAA_M - AAA_M (percentage points)", "arch.data.default, "
                "released M+1 day 2", "macro", "1 month"),
    FeatureSpec("default_spread_chg_3m", "spread_M - spread_{M-3}", "arch.data.default, "
                "released M+1 day 2", "macro", "3 months"),
)
FEATURE_NAMES = [f.name for f in FEATURES]
FEATURE_FAMILY = {f.name: f.family for f in FEATURES}
FAMILY_FEATURES = {fam: [f.name for f in FEATURES if f.family == fam] for fam in FAMILIES}
MARKET_FEATURES = FAMILY_FEATURES["market"]
#: Served feature sets by version. A model bundle records its ``feature_names``; the Feast
#: FeatureService ``stockray_lgbm_<version>`` serves exactly that set (naming scheme:
#: ``stockray_<model family>_<feature set version>``; a new version whenever the list changes,
#: old services stay registered while a model trained on them may still be served).
FEATURE_SETS: dict[str, list[str]] = {
    # the walking skeleton's 18 features (before issue 4)
    "v1": ["ret_1d", "ret_5d", "ret_20d", "sma_ratio_10", "sma_ratio_50", "ema_ratio_12_26",
           "rsi_14", "macd_hist_norm", "bb_pctb_20", "atr_norm_14", "vol_20", "volume_z_20",
           "mkt_ret_1d", "mkt_ret_5d", "mkt_vol_20", "mkt_trend_200", "day_of_week", "month"],
    "v2": FEATURE_NAMES,
}
FEATURE_SET_VERSION = "v2"
CROSS_SECTIONAL_BASES = ("ret_1d", "ret_5d", "ret_20d", "vol_20", "volume_z_20")
assert FAMILY_FEATURES["macro"] == MACRO_FEATURES

#: ``engine="auto"`` runs the chunks of ``features.stream`` as Ray Data tasks from this many
#: bars when a Ray cluster is already up. Measured by ``bench/features.py`` (lake -> offline
#: tables, bench/results/features.json) on 2 cores under heavy outside load (1-min load
#: 11-45): one process 13.7 s for skfolio's 175k bars and 349 s for 5.04M synthetic bars
#: (~70-80 us/bar), Ray Data 66 s and 214 s (~60 s fixed + ~30 us/bar): they break even near
#: 1.5M bars. More CPUs lower Ray's per-bar cost, never its fixed one.
RAY_MIN_ROWS = 1_500_000
#: ...and from this many when the cluster must be started for it (``ray.init`` 16-18 s here).
RAY_MIN_ROWS_COLD = 2_000_000


def adjusted(bars: pd.DataFrame) -> dict[str, np.ndarray]:
    """Split/dividend-adjusted OHLC (``price * adj_factor``) and volume (``/ adj_factor``)."""
    f = bars["adj_factor"].to_numpy(float)
    out = {k: bars[k].to_numpy(float) * f for k in ("open", "high", "low", "close")}
    out["volume"] = bars["volume"].to_numpy(float) / f
    return out


def _obv_change(close: np.ndarray, volume: np.ndarray, n: int) -> np.ndarray:
    obv = K.obv(close, volume)
    out = np.full_like(obv, np.nan)
    if len(obv) > n:
        vsum = pd.Series(volume).rolling(n).sum().to_numpy()[n:]
        with np.errstate(invalid="ignore", divide="ignore"):
            out[n:] = np.where(vsum > 0, (obv[n:] - obv[:-n]) / vsum, np.nan)
    return out


def _utc(ts) -> pd.DatetimeIndex:
    idx = pd.DatetimeIndex(ts)
    return idx.tz_localize("UTC") if idx.tz is None else idx.tz_convert("UTC")


def ticker_features(bars: pd.DataFrame) -> dict[str, np.ndarray]:
    """Technical and gap features of one ticker's bars (sorted by ts), column -> array."""
    px = adjusted(bars)
    o, close, high, low, volume = px["open"], px["close"], px["high"], px["low"], px["volume"]
    ts = _utc(bars["ts"])
    c: dict[str, np.ndarray] = {}
    c["ret_1d"] = K.log_returns(close, 1)
    c["ret_5d"] = K.log_returns(close, 5)
    c["ret_20d"] = K.log_returns(close, 20)
    c["sma_ratio_10"] = close / K.sma(close, 10) - 1.0
    c["sma_ratio_50"] = close / K.sma(close, 50) - 1.0
    c["ema_ratio_12_26"] = K.ema(close, 12) / K.ema(close, 26) - 1.0
    c["rsi_14"] = K.rsi(close, 14)
    c["macd_hist_norm"] = K.macd(close, 12, 26, 9)[2] / close
    c["bb_pctb_20"] = K.bollinger(close, 20, 2.0)[3]
    c["atr_norm_14"] = K.atr(high, low, close, 14) / close
    c["vol_20"] = K.volatility(close, 20)
    c["volume_z_20"] = K.zscore(np.log1p(volume), 20)
    c["stoch_k_14"], c["stoch_d_14"] = K.stoch(high, low, close, 14, 3, 3)
    c["roc_10"] = K.roc(close, 10)
    c["obv_chg_20"] = _obv_change(close, volume, 20)
    c["parkinson_20"] = K.parkinson(high, low, 20)
    c["garman_klass_20"] = K.garman_klass(o, high, low, close, 20)
    a = K.alpha158(o, high, low, close, volume, windows=(20,))
    for fam in ("RSQR", "RESI", "CORR", "CORD", "CNTD", "SUMD", "IMXD"):
        c[f"a158_{fam.lower()}_20"] = a[f"{fam}20"]
    days = ts.tz_localize(None).to_numpy().astype("datetime64[D]")
    gap = np.full(len(days), np.nan)
    missed = np.full(len(days), np.nan)
    if len(days) > 1:
        gap[1:] = (days[1:] - days[:-1]).astype(float)
        missed[1:] = np.busday_count(days[:-1] + 1, days[1:]).astype(float)
    c["gap_days"], c["missed_sessions"] = gap, missed
    return c


def market_features(market_bars: pd.DataFrame) -> pd.DataFrame:
    """Trend/volatility context and regimes of the market index, keyed by ts (all causal)."""
    close = adjusted(market_bars)["close"]
    out = pd.DataFrame({"ts": _utc(market_bars["ts"])})
    out["mkt_ret_1d"] = K.log_returns(close, 1)
    out["mkt_ret_5d"] = K.log_returns(close, 5)
    vol = K.volatility(close, 20)
    out["mkt_vol_20"] = vol
    sma200 = K.sma(close, 200)
    out["mkt_trend_200"] = close / sma200 - 1.0
    sma50 = K.sma(close, 50)
    regime = np.where((close >= sma200) & (sma50 >= sma200), 1.0,
                      np.where((close < sma200) & (sma50 < sma200), -1.0, 0.0))
    out["mkt_trend_regime"] = np.where(np.isfinite(sma200), regime, np.nan)
    # At least 60 values (a quarter) before a percentile means anything; up to a year.
    pct = pd.Series(vol).rolling(252, min_periods=60).rank(pct=True).to_numpy()
    out["mkt_vol_pct_252"] = pct
    out["mkt_vol_regime"] = np.where(np.isfinite(pct),
                                     np.where(pct < 1 / 3, 0.0, np.where(pct < 2 / 3, 1.0, 2.0)),
                                     np.nan)
    return out


def labels(bars: pd.DataFrame, horizons=HORIZONS) -> pd.DataFrame:
    """Forward labels of one ticker: ``fwd_ret_hd[t] = ln(c[t+h] / c[t])`` (adjusted close)
    and ``fwd_dir_hd = 1.0 if fwd_ret_hd > 0 else 0.0``; NaN for the last h rows."""
    close = adjusted(bars)["close"]
    out = pd.DataFrame({"ticker": bars["ticker"].to_numpy(), "ts": _utc(bars["ts"])})
    logc = np.log(close)
    for h in horizons:
        fwd = np.full_like(logc, np.nan)
        if len(logc) > h:
            fwd[:-h] = logc[h:] - logc[:-h]
        out[f"fwd_ret_{h}d"] = fwd
    for h in horizons:
        fwd = out[f"fwd_ret_{h}d"].to_numpy()
        out[f"fwd_dir_{h}d"] = np.where(np.isnan(fwd), np.nan, (fwd > 0).astype(float))
    return out


_GROUP_COLUMNS = ["ticker", "ts", *[n for n in FEATURE_NAMES
                                    if FEATURE_FAMILY[n] != "cross_sectional"],
                  "feature_ts", *ALL_LABEL_COLUMNS]


def context_features(ts, market: pd.DataFrame | None,
                     macro: dict[str, pd.DataFrame] | None) -> pd.DataFrame:
    """Market and macro columns for every date in ``ts`` (sorted, unique), as of that date:
    the newest index row at or before it, the newest macro release at or before it."""
    ctx = pd.DataFrame({"ts": _utc(pd.Series(ts).drop_duplicates().sort_values())})
    if market is not None and len(market):
        ctx = pd.merge_asof(ctx, market.sort_values("ts"), on="ts", direction="backward")
    else:
        for name in MARKET_FEATURES:
            ctx[name] = np.nan
    return join_macro(ctx, macro)


_CONTEXT = [*MARKET_FEATURES, *FAMILY_FEATURES["macro"]]


def features_for_group(bars: pd.DataFrame, market: pd.DataFrame | None = None,
                       macro: dict[str, pd.DataFrame] | None = None,
                       context: pd.DataFrame | None = None) -> pd.DataFrame:
    """Every per-ticker feature and label row of one ticker (the pipeline's unit of work).

    Market and macro columns come from ``context`` (:func:`context_features`, built here from
    ``market``/``macro`` when not given): the context row at or before each bar's ts.
    Calendar features derive from ts, and ``feature_ts`` (epoch seconds) records the as-of
    time. Cross-sectional ranks need all tickers: see :func:`add_cross_sectional`.
    """
    bars = bars.sort_values("ts").reset_index(drop=True)
    ts = _utc(bars["ts"])
    if context is None:
        context = context_features(ts, market, macro)
    cols = ticker_features(bars)
    cts = _utc(context["ts"]).asi8  # int64 ns: object arrays of Timestamps are 100x slower
    pos = np.searchsorted(cts, ts.asi8, side="right") - 1
    ok = pos >= 0
    for name in _CONTEXT:
        v = context[name].to_numpy(float)
        cols[name] = np.where(ok, v[np.maximum(pos, 0)], np.nan)
    cols["day_of_week"] = ts.dayofweek.to_numpy(float)
    cols["month"] = ts.month.to_numpy(float)
    cols["days_to_month_end"] = (ts.days_in_month - ts.day).to_numpy(float)
    cols["feature_ts"] = ts.asi8 / 1e9
    lab = labels(bars)
    for col in ALL_LABEL_COLUMNS:
        cols[col] = lab[col].to_numpy()
    out = pd.DataFrame({"ticker": bars["ticker"].to_numpy(), "ts": ts, **cols})
    return out[_GROUP_COLUMNS]


def add_cross_sectional(frame: pd.DataFrame) -> pd.DataFrame:
    """Add ``cs_rank_<x>`` columns: each ticker's rank of x among all tickers on its date,
    scaled to [0, 1] (average ranks for ties; NaN where x is NaN). Returns the frame with the
    canonical column order."""
    g = frame.groupby("ts", sort=False)
    for base in CROSS_SECTIONAL_BASES:
        r = g[base].rank(method="average")
        n = g[base].transform("count")
        frame[f"cs_rank_{base}"] = np.where(n > 1, (r - 1) / (n - 1).where(n > 1), 0.5)
        frame.loc[frame[base].isna(), f"cs_rank_{base}"] = np.nan
    return frame[OUTPUT_COLUMNS]


OUTPUT_COLUMNS = ["ticker", "ts", *FEATURE_NAMES, "feature_ts", *ALL_LABEL_COLUMNS]


def split_market(bars: pd.DataFrame, market_ticker: str = MARKET_TICKER):
    """Separate the market index from the stock bars; returns (stocks, market_features)."""
    is_mkt = bars["ticker"] == market_ticker
    market = market_features(bars[is_mkt].sort_values("ts")) if is_mkt.any() else None
    return bars[~is_mkt].reset_index(drop=True), market


def _macro(macro):
    # "arch": the packaged series; None: no macro (NaN columns); a dict: given release tables.
    return macro_releases() if isinstance(macro, str) and macro == "arch" else macro


def build_features_local(bars: pd.DataFrame, macro="arch", progress: bool = False
                         ) -> pd.DataFrame:
    """One-process path: every ticker's features and labels, sorted by (ticker, ts).

    Args:
        bars: canonical bars of the stocks and (optionally) the market index.
        macro: ``"arch"`` (default), None, or release tables from
            :func:`features.macro.macro_releases`.
        progress: show a progress bar over tickers.
    """
    stocks, market = split_market(bars)
    context = context_features(stocks["ts"], market, _macro(macro))
    groups = stocks.groupby("ticker", sort=True)
    if progress:
        from tqdm import tqdm

        groups = tqdm(groups, total=stocks["ticker"].nunique(), desc="features", unit="ticker",
                      mininterval=1.0)
    parts = [features_for_group(g, context=context) for _, g in groups]
    if not parts:
        return pd.DataFrame(columns=OUTPUT_COLUMNS)
    return add_cross_sectional(pd.concat(parts, ignore_index=True))


def choose_engine(engine: str, n_rows: int, cluster_up: bool = True) -> str:
    """Resolve ``"auto"`` to ``"ray"`` or ``"local"`` by row count (see :data:`RAY_MIN_ROWS`).

    Args:
        engine: ``"auto"``, ``"ray"`` or ``"local"`` (the last two are returned as given).
        n_rows: bars to process.
        cluster_up: a Ray cluster is already running (else starting one is part of the cost).
    """
    if engine in ("ray", "local"):
        return engine
    if engine != "auto":
        raise ValueError(f"engine must be 'auto', 'ray' or 'local', not {engine!r}")
    return "ray" if n_rows >= (RAY_MIN_ROWS if cluster_up else RAY_MIN_ROWS_COLD) else "local"
