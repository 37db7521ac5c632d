"""A seeded synthetic market with a planted, known-strength predictable signal.

Model (per ticker ``i``, trading day ``t``, all returns are daily log returns)::

    r[i, t] = beta[i] * m[t] + z[i, t]
    m[t]    = mu + sigma_m * eps_m[t]                          # market, iid, unpredictable
    z[i, t] = rho * z[i, t-1] + sigma * eps[i, t]              # idiosyncratic AR(1)

``z`` starts from its stationary law ``N(0, sigma^2 / (1 - rho^2))``. The **predictable part**
is the AR(1) in idiosyncratic returns: with ``rho < 0`` it is a short-term reversal of stated
coefficient ``rho``. Everything else (market, innovations) is unpredictable. The true
conditional mean of the ``h``-day forward log return given the state at ``t`` is::

    oracle_h[i, t] = h * beta[i] * mu + S_h * z[i, t],     S_h = sum_{k=1..h} rho^k

This is recoverable from prices: ``z[i, t] = r[i, t] - beta[i] * m[t]`` and, within one date,
the ``beta * m`` term only shifts every ticker by nearly the same amount (its cross-sectional
spread is ``beta_sd * |m|``, about a tenth of ``z``'s with the defaults), so ranking by the
past 1-day return recovers ~99% of the oracle ranking.

**Analytic oracle IC** (per-date cross-sectional Pearson correlation of ``oracle_h`` with the
realised ``h``-day return, large-N approximation; exact as N -> inf when ``beta_sd = 0``)::

    s2 = sigma^2 / (1 - rho^2)                     # stationary var of z
    V_h = h + 2 * sum_{j=1..h-1} (h - j) rho^j     # var(sum of h future z) / s2
    a = h^2 mu^2 beta_sd^2 + S_h^2 s2              # cross-sectional var of oracle (= cov)
    b = (h^2 mu^2 + h sigma_m^2) beta_sd^2 + V_h s2  # E cross-sectional var of realised
    IC_h ~= a / sqrt(a * b)

With ``beta_sd = 0`` this is ``|S_h| / sqrt(V_h)``, e.g. ``|rho|`` for ``h = 1``. The empirical
figure (`empirical_oracle_ic`) differs by sampling noise and by the ratio-of-expectations
approximation.

Bars: ``close = p0 * exp(cumsum r)``; ``open`` carries a share of the day's return as an
overnight gap, ``high``/``low`` extend beyond ``max/min(open, close)`` by a half-normal wiggle
(so ``low <= min(open, close) <= max(open, close) <= high`` always); volume rises with ``|r|``.
No corporate actions: ``adj_close == close``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd


@dataclass
class SyntheticConfig:
    """Parameters of the planted-signal market (all per trading day)."""

    n_tickers: int = 50
    """Tickers in the cross-section."""
    n_days: int = 750
    """Trading days (business days from ``start``)."""
    seed: int = 0
    """Seed of numpy's default_rng; same seed -> identical market."""
    rho: float = -0.2
    """AR(1) coefficient of idiosyncratic returns: the planted signal (negative = reversal)."""
    idio_vol: float = 0.02
    """sigma, sd of the idiosyncratic innovation."""
    market_vol: float = 0.01
    """sigma_m, sd of the market return."""
    market_drift: float = 0.0003
    """mu, mean market log return (~7.5% a year)."""
    beta_mean: float = 1.0
    beta_sd: float = 0.2
    """Cross-sectional dispersion of betas (contaminates z seen through raw returns)."""
    start: str = "2018-01-02"
    horizons: tuple[int, ...] = field(default=(1, 5, 20))
    """Horizons (trading days) for which oracle predictions are produced."""


@dataclass
class SyntheticMarket:
    """Output of `make_market`.

    Attributes:
        bars: ``ticker, ts, open, high, low, close, volume, adj_close`` (ts UTC dates).
        oracle: ``ticker, ts, oracle_{h}d`` for each configured horizon, same row order.
        betas: true beta per ticker.
        config: the generating parameters.
    """

    bars: pd.DataFrame
    oracle: pd.DataFrame
    betas: pd.Series
    config: SyntheticConfig

    def analytic_ic(self, horizon: int) -> float:
        """Analytic oracle IC for ``horizon`` (see module docstring)."""
        return analytic_oracle_ic(self.config, horizon)

    def panel(self) -> pd.DataFrame:
        """Bars + oracle columns + labels ``fwd_ret_{h}d`` (forward log return of close).

        A convenience for tests and demos; the pipeline builds its labels with its own
        target code.
        """
        out = self.bars.merge(self.oracle, on=["ticker", "ts"], how="left", validate="1:1")
        g = np.log(out["close"]).groupby(out["ticker"])
        for h in self.config.horizons:
            out[f"fwd_ret_{h}d"] = g.shift(-h) - np.log(out["close"])
        return out

    def to_dict(self) -> dict:
        return {
            "config": asdict(self.config),
            "analytic_ic": {h: self.analytic_ic(h) for h in self.config.horizons},
        }


def analytic_oracle_ic(cfg: SyntheticConfig, horizon: int) -> float:
    """Large-N approximation of the mean per-date IC of ``oracle_h`` vs realised returns."""
    h, rho = int(horizon), cfg.rho
    if h < 1:
        raise ValueError(f"horizon must be >= 1, got {horizon}")
    s2 = cfg.idio_vol**2 / (1.0 - rho**2)
    s_h = sum(rho**k for k in range(1, h + 1))
    v_h = h + 2.0 * sum((h - j) * rho**j for j in range(1, h))
    vb = cfg.beta_sd**2
    a = h * h * cfg.market_drift**2 * vb + s_h**2 * s2
    b = (h * h * cfg.market_drift**2 + h * cfg.market_vol**2) * vb + v_h * s2
    return float(a / np.sqrt(a * b)) if a > 0 else 0.0


def make_market(cfg: SyntheticConfig | None = None, **overrides) -> SyntheticMarket:
    """Simulate the market described in the module docstring.

    Args:
        cfg: parameters; ``overrides`` replace single fields (``make_market(seed=3)``).

    Returns:
        `SyntheticMarket` with bars sorted by (ts, ticker).
    """
    cfg = cfg or SyntheticConfig()
    if overrides:
        cfg = SyntheticConfig(**{**asdict(cfg), **overrides})
    if not -1.0 < cfg.rho < 1.0:
        raise ValueError(f"rho must be in (-1, 1) for a stationary AR(1), got {cfg.rho}")
    if cfg.n_tickers < 2 or cfg.n_days < 2:
        raise ValueError("need at least 2 tickers and 2 days")
    rng = np.random.default_rng(cfg.seed)
    n, t = cfg.n_tickers, cfg.n_days
    betas = cfg.beta_mean + cfg.beta_sd * rng.standard_normal(n)
    m = cfg.market_drift + cfg.market_vol * rng.standard_normal(t)  # (n_days,)
    eps = cfg.idio_vol * rng.standard_normal((t, n))  # (n_days, n_tickers)
    z = np.empty((t, n))  # (n_days, n_tickers), row t = idiosyncratic return of day t
    z[0] = rng.standard_normal(n) * cfg.idio_vol / np.sqrt(1.0 - cfg.rho**2)
    for k in range(1, t):
        z[k] = cfg.rho * z[k - 1] + eps[k]
    r = m[:, None] * betas[None, :] + z  # (n_days, n_tickers) daily log returns
    p0 = np.exp(rng.uniform(np.log(10.0), np.log(300.0), n))
    close = p0[None, :] * np.exp(np.cumsum(r, axis=0))
    # day 0's return is measured from an unobserved previous close p0
    prev_close = np.vstack([p0[None, :], close[:-1]])
    gap = 0.3 * r + 0.002 * rng.standard_normal((t, n))  # overnight part of the move
    open_ = prev_close * np.exp(gap)
    high = np.maximum(open_, close) * np.exp(np.abs(0.006 * rng.standard_normal((t, n))))
    low = np.minimum(open_, close) * np.exp(-np.abs(0.006 * rng.standard_normal((t, n))))
    base_vol = np.exp(rng.uniform(np.log(2e5), np.log(5e6), n))
    volume = np.round(
        base_vol[None, :] * np.exp(0.25 * rng.standard_normal((t, n)) + 10.0 * np.abs(r))
    )

    dates = pd.bdate_range(cfg.start, periods=t, tz="UTC")
    tickers = np.array([f"SYN{i:03d}" for i in range(n)])
    ts_col = np.repeat(dates, n)
    tk_col = np.tile(tickers, t)
    bars = pd.DataFrame(
        {
            "ticker": tk_col,
            "ts": ts_col,
            "open": open_.ravel(),
            "high": high.ravel(),
            "low": low.ravel(),
            "close": close.ravel(),
            "volume": volume.ravel().astype(float),
            "adj_close": close.ravel(),
        }
    )
    oracle = pd.DataFrame({"ticker": tk_col, "ts": ts_col})
    for h in cfg.horizons:
        s_h = sum(cfg.rho**k for k in range(1, h + 1))
        oracle[f"oracle_{h}d"] = (h * cfg.market_drift * betas[None, :] + s_h * z).ravel()
    return SyntheticMarket(
        bars=bars, oracle=oracle, betas=pd.Series(betas, index=tickers), config=cfg
    )


def empirical_oracle_ic(market: SyntheticMarket, horizon: int, *, start=None, end=None) -> float:
    """Mean per-date IC of ``oracle_{h}d`` against the realised ``h``-day return.

    Args:
        start, end: optional inclusive date bounds (e.g. a test segment).
    """
    from training.evaluate import ic

    p = market.panel()
    m = p[f"fwd_ret_{horizon}d"].notna()
    if start is not None:
        m &= p["ts"] >= pd.Timestamp(start)
    if end is not None:
        m &= p["ts"] <= pd.Timestamp(end)
    p = p[m]
    return ic(p[f"oracle_{horizon}d"], p[f"fwd_ret_{horizon}d"], p["ts"])
