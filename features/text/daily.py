"""Daily text features per (ticker, session), point in time, and the ``sentiment_shock`` rule.

**Cut-off.** Session D's row holds the text published in ``[close(D-1), close(D))``, where
``close(D)`` is 16:00 America/New_York on D (DST-aware) and D-1 the previous session of the
calendar: an article at 16:00:00 or later, or on a weekend or holiday, counts for the next
session. The row is stamped ``ts = D`` (midnight UTC), the same stamp as D's bar and its price
features, which also describe D as of its close; ``text_asof_ts`` is the cut-off itself.

Sessions are the trading days of the bars (when given) extended by business days past the
last bar, so text after the last stored session still lands on the next weekday.

Features (sentiment of one record = ``p_positive - p_negative`` in [-1, 1]; unscored records
count but carry no sentiment):

- ``news_count_1d``: records in the window; ``news_count_surprise``: ``log1p(count)`` minus its
  mean over the previous 30 sessions;
- ``news_sent_mean_1d``: mean sentiment (NaN without scored text);
  ``news_sent_mean_5d``: mean over the last 5 sessions' records;
- ``news_pos_share_1d`` / ``news_neg_share_1d``: share of scored records whose top class is
  positive / negative;
- ``news_sent_surprise``: ``news_sent_mean_1d`` minus the mean of the previous 30 sessions'
  daily means (sessions without text skipped; needs 5 of them, else NaN);
- ``filing_8k_1d``, ``filing_periodic_1d``: 8-K filings, and 10-K/10-Q filings, in the window.

Every value of row D uses records before close(D) only (``tests/unit/test_text_features.py``
truncates and perturbs the text after a cut-off and checks the rows before it do not move).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.events import EVENT_COLUMNS
from features.events import _frame as event_frame

EXCHANGE_TZ = "America/New_York"
CLOSE = pd.Timedelta(hours=16)
BASELINE = 30  # sessions of trailing baseline for the surprises
BASELINE_MIN = 5  # sessions with text needed before a sentiment surprise is defined
TEXT_FEATURES = ("news_count_1d", "news_count_surprise", "news_sent_mean_1d",
                 "news_sent_mean_5d", "news_pos_share_1d", "news_neg_share_1d",
                 "news_sent_surprise", "filing_8k_1d", "filing_periodic_1d")
TEXT_TS = "text_asof_ts"


def session_close(days: pd.DatetimeIndex) -> pd.DatetimeIndex:
    """16:00 New York on each (naive or UTC-midnight) session date, in UTC."""
    d = pd.DatetimeIndex(days)
    d = d.tz_convert(None) if d.tz is not None else d
    return (d.normalize() + CLOSE).tz_localize(EXCHANGE_TZ).tz_convert("UTC")


def sessions_for(bar_days: pd.DatetimeIndex | None, first_text: pd.Timestamp,
                 last_text: pd.Timestamp) -> pd.DatetimeIndex:
    """Naive session dates: the bar sessions, with weekdays before the first bar and after the
    last one so every record from ``first_text`` to ``last_text`` has a session."""
    def local_day(t: pd.Timestamp) -> pd.Timestamp:
        return t.tz_convert(EXCHANGE_TZ).tz_localize(None).normalize()

    lo, hi = local_day(first_text) - pd.Timedelta(days=7), local_day(last_text) + pd.Timedelta(
        days=7)
    days = (pd.DatetimeIndex([]) if bar_days is None or not len(bar_days)
            else pd.DatetimeIndex(bar_days).tz_localize(None).normalize().unique().sort_values())
    if not len(days):
        return pd.bdate_range(lo, hi)
    before = pd.bdate_range(lo, days[0] - pd.Timedelta(days=1))
    after = pd.bdate_range(days[-1] + pd.Timedelta(days=1), hi)
    return before.append(days).append(after).unique().sort_values()


def assign_sessions(ts: pd.Series, sessions: pd.DatetimeIndex) -> np.ndarray:
    """Index into ``sessions`` of the session each publication time counts for; -1 for the
    first session (no earlier close bounds its window) and past the last one."""
    close = session_close(sessions).asi8
    t = pd.DatetimeIndex(ts).tz_convert("UTC").asi8
    idx = np.searchsorted(close, t, side="right")  # first session whose close is > t
    idx[(idx == 0) | (idx >= len(close))] = -1
    return idx


def _trailing_mean(s: pd.Series, window: int, min_periods: int) -> pd.Series:
    """Mean of the previous ``window`` values (excluding the current one), NaNs skipped."""
    return s.shift(1).rolling(window, min_periods=min_periods).mean()


def text_features(news: pd.DataFrame, scores: pd.DataFrame,
                  bar_days: dict[str, pd.DatetimeIndex] | None = None) -> pd.DataFrame:
    """Per (ticker, session) features (``TEXT_FEATURES``), ``ts`` and ``text_asof_ts``.

    Args:
        news: the lake's news rows (``id, ts, tickers, kind, form``).
        scores: ``id, p_negative, p_neutral, p_positive`` (``scoring.read_scores``).
        bar_days: per ticker, its trading days (bar ``ts``); default: weekdays.

    Returns:
        One row per ticker and session from the ticker's first record to the session of the
        newest record of any ticker, sorted (ticker, ts).
    """
    cols = ["ticker", "ts", *TEXT_FEATURES, TEXT_TS]
    ex = news[["id", "ts", "tickers", "kind", "form"]].explode("tickers").dropna(
        subset=["tickers"]).rename(columns={"tickers": "ticker"})
    if ex.empty:
        return pd.DataFrame(columns=cols)
    ex = ex.merge(scores[["id", "p_negative", "p_neutral", "p_positive"]], on="id", how="left")
    p = ex[["p_negative", "p_neutral", "p_positive"]].to_numpy(float)
    scored = np.isfinite(p).all(axis=1)
    top = np.where(scored, np.nan_to_num(p).argmax(axis=1), -1)
    ex["sent"] = np.where(scored, p[:, 2] - p[:, 0], np.nan)
    ex["scored"] = scored.astype(float)
    ex["pos"] = np.where(scored, (top == 2).astype(float), np.nan)
    ex["neg"] = np.where(scored, (top == 0).astype(float), np.nan)
    form = ex["form"].fillna("").str.upper()
    ex["f8k"] = ((ex["kind"] == "filing") & form.str.startswith("8-K")).astype(float)
    ex["fper"] = ((ex["kind"] == "filing") & form.str.match(r"10-[KQ]")).astype(float)
    first, last = pd.Timestamp(ex["ts"].min()), pd.Timestamp(ex["ts"].max())
    out = []
    for ticker, g in ex.groupby("ticker", sort=True):
        days = sessions_for((bar_days or {}).get(ticker), first, last)
        idx = assign_sessions(g["ts"], days)
        g = g.assign(s=idx)[idx >= 0]
        if g.empty:
            continue
        agg = g.groupby("s").agg(n=("id", "size"), ns=("scored", "sum"), sent_sum=("sent", "sum"),
                                 pos=("pos", "mean"), neg=("neg", "mean"), f8k=("f8k", "sum"),
                                 fper=("fper", "sum"))
        # Rows run to the session of the newest record of any ticker: quiet tickers get
        # zero-count rows up to then, never rows for sessions no text has reached yet.
        end = int(assign_sessions(pd.Series([last]), days)[0])
        span = np.arange(int(agg.index.min()), end + 1)
        a = agg.reindex(span)
        n = a["n"].fillna(0.0)
        ns = a["ns"].fillna(0.0)
        ssum = a["sent_sum"].where(ns > 0)
        mean1 = ssum / ns.where(ns > 0)
        log_n = np.log1p(n)
        f = pd.DataFrame({
            "ticker": ticker, "ts": days[span].tz_localize("UTC"),
            "news_count_1d": n.to_numpy(),
            "news_count_surprise": (log_n - _trailing_mean(log_n, BASELINE, BASELINE_MIN)).to_numpy(),
            "news_sent_mean_1d": mean1.to_numpy(),
            "news_sent_mean_5d": (ssum.fillna(0).rolling(5, min_periods=1).sum()
                                  / ns.rolling(5, min_periods=1).sum().where(lambda x: x > 0)
                                  ).to_numpy(),
            "news_pos_share_1d": a["pos"].to_numpy(),
            "news_neg_share_1d": a["neg"].to_numpy(),
            "news_sent_surprise": (mean1 - _trailing_mean(mean1, BASELINE, BASELINE_MIN)
                                   ).to_numpy(),
            "filing_8k_1d": a["f8k"].fillna(0.0).to_numpy(),
            "filing_periodic_1d": a["fper"].fillna(0.0).to_numpy(),
            TEXT_TS: session_close(days[span]),
        })
        out.append(f)
    if not out:
        return pd.DataFrame(columns=cols)
    return pd.concat(out, ignore_index=True)[cols].sort_values(["ticker", "ts"]).reset_index(
        drop=True)


def sentiment_shocks(features: pd.DataFrame, news: pd.DataFrame, threshold: float = 0.5,
                     min_count: int = 3) -> pd.DataFrame:
    """``sentiment_shock`` events (``features.events.EVENT_COLUMNS``): a session whose mean
    sentiment departs from the ticker's 30-session baseline by more than ``threshold`` on at
    least ``min_count`` records. The event time is the publication time of the last record in
    that session's window (when the shock became knowable), not the close."""
    f = features[(features["news_count_1d"] >= min_count)
                 & (features["news_sent_surprise"].abs() > threshold)]
    if f.empty:
        return pd.DataFrame(columns=EVENT_COLUMNS)
    ex = news[["ts", "tickers"]].explode("tickers").rename(columns={"tickers": "ticker"})
    rows = []
    for r in f.itertuples(index=False):
        lo = r.text_asof_ts - pd.Timedelta(days=7)  # bounded look-back; window is within it
        in_win = ex[(ex["ticker"] == r.ticker) & (ex["ts"] < r.text_asof_ts) & (ex["ts"] >= lo)]
        last = in_win["ts"].max() if len(in_win) else r.text_asof_ts
        rows.append({"ticker": r.ticker, "ns": pd.Timestamp(last).value,
                     "rule": "sentiment_shock", "value": float(r.news_sent_surprise),
                     "threshold": threshold,
                     "detail": f"session={pd.Timestamp(r.ts).date()} n={int(r.news_count_1d)} "
                               f"mean={r.news_sent_mean_1d:.3f}"})
    # The stream's event constructor: same ids (rule|ticker|time), columns and order.
    return event_frame(rows)
