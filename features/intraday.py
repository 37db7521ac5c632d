"""What the stream writes online: its own intraday view, and the served daily row refreshed
for the running session.

Two different things, on purpose:

1. **Intraday view** (``intraday_features``, fed by the Feast PushSource ``intraday_push``):
   the engine's minute indicators (``m1_*``) and ``intraday_ts`` per ticker, pushed after
   every microbatch (:func:`push_intraday`). No served model reads it yet; it is there for
   intraday models and for whoever inspects the stream. It does not bump the online
   generation stamp (the served daily cache need not drop every minute).
2. **Daily row for the running session** (:func:`session_rows` + ``features.store.push_online``):
   the daily model keeps serving *daily* features, computed by the same pipeline function as
   the batch job (``features.pipeline.features_for_group``) over the ticker's daily history
   from the lake plus one provisional bar: the session so far (first open, max high, min low,
   last close, summed volume of today's minute bars), stamped with the newest minute bar's end
   time. So Predict's ``feature_timestamp`` moves with the stream and its inputs are "today's
   bar as it stands". Caveats: the model was trained on completed sessions, so a partial bar is
   off-distribution early in the day (volume features especially: today's volume so far is
   compared with whole past days); market and macro context stay as of the last daily bar;
   cross-sectional ranks are taken among the tickers refreshed together (the whole streamed
   universe on a timed refresh; only the affected tickers on an event refresh). The nightly
   materialize replaces the provisional row with the completed session's row.
"""

from __future__ import annotations

import pandas as pd

from features.lake import read_bars
from features.pipeline import (
    OUTPUT_COLUMNS,
    add_cross_sectional,
    context_features,
    features_for_group,
    market_features,
)
from features.sources import MARKET_TICKER

INTRADAY_VIEW = "intraday_features"
INTRADAY_PUSH = "intraday_push"
#: Daily bars kept per ticker for a refresh: the longest daily window is 200 sessions
#: (``mkt_trend_200``); 300 leaves room for warm-up of the recursive kernels.
HISTORY_DAYS = 300


def push_intraday(store, rows: pd.DataFrame, view=None) -> int:
    """Write intraday rows (``MinuteEngine.intraday_rows``) into the PushSource's view.

    Same effect as ``store.push(INTRADAY_PUSH, rows, to=PushMode.ONLINE)``, whose only view is
    :data:`INTRADAY_VIEW`; but ``push`` re-reads every view and service of the registry to
    find that out (30-60 ms a call here, measured), so the view is written directly. On
    stockray's SQLite online store (the default) the batch is one upsert straight from the
    frame (``features.online_sqlite.write_frame``); on the others, Feast's
    ``write_to_online_store`` (a protobuf per value).
    """
    if rows.empty:
        return 0
    from features.online_sqlite import is_stockray_sqlite, write_frame

    if is_stockray_sqlite(store):  # ``view``: the FeatureView, saves a registry lookup
        return write_frame(store, view if view is not None else INTRADAY_VIEW, rows)
    store.write_to_online_store(INTRADAY_VIEW, rows)
    return len(rows)


class DailyHistory:
    """Daily bars of the lake per ticker (last :data:`HISTORY_DAYS`), cached for the stream;
    market context from the lake's index bars; macro release tables (loaded once)."""

    def __init__(self, bars_dir, macro="arch"):
        from features.pipeline import _macro

        self.bars_dir = bars_dir
        if macro == "fred":  # the lake's FRED first releases (features.providers.fred)
            from pathlib import Path

            from features.providers.fred import resolve_macro

            macro = resolve_macro("fred", Path(bars_dir).parent)
        self.macro = _macro(macro)
        self._bars: dict[str, pd.DataFrame] = {}
        try:
            idx = read_bars(bars_dir, [MARKET_TICKER])
            self.market = market_features(idx) if len(idx) else None
        except FileNotFoundError:
            self.market = None

    def bars(self, tickers: list[str]) -> dict[str, pd.DataFrame]:
        todo = [t for t in tickers if t not in self._bars]
        if todo:
            try:
                got = read_bars(self.bars_dir, todo)
            except FileNotFoundError:
                got = pd.DataFrame(columns=["ticker", "ts"])
            for t in todo:
                self._bars[t] = got[got["ticker"] == t].tail(HISTORY_DAYS).reset_index(drop=True)
        return {t: self._bars[t] for t in tickers}


def session_rows(history: DailyHistory, session: pd.DataFrame) -> pd.DataFrame:
    """Pipeline rows (``OUTPUT_COLUMNS``) of each ticker's running session.

    Args:
        history: the lake's daily bars.
        session: ``MinuteEngine.session_bars`` (one provisional bar per ticker).

    Returns:
        One row per ticker that has daily history (others are skipped: a ticker the lake does
        not know has no daily features to refresh).
    """
    daily = history.bars(list(session["ticker"]))
    parts = []
    for s in session.itertuples(index=False):
        past = daily[s.ticker]
        if past.empty:
            continue
        day = s.ts.tz_convert("America/New_York").normalize().tz_localize(None)
        local = pd.DatetimeIndex(past["ts"]).tz_convert("America/New_York").tz_localize(None)
        past = past[local.normalize() < day]  # today's completed bar (if any) is replaced
        if past.empty:
            continue
        bar = {"ticker": s.ticker, "ts": s.ts, "open": s.open, "high": s.high, "low": s.low,
               "close": s.close, "volume": s.volume,
               # the lake's newest factor: minute bars are as traded, like the newest day
               "adj_factor": float(past["adj_factor"].iloc[-1])}
        bars = pd.concat([past, pd.DataFrame([bar])], ignore_index=True)
        ctx = context_features(bars["ts"], history.market, history.macro)
        parts.append(features_for_group(bars, context=ctx).tail(1))
    if not parts:
        return pd.DataFrame(columns=OUTPUT_COLUMNS)
    frame = pd.concat(parts, ignore_index=True)
    # Ranks across the refreshed tickers: one cross-section per session day, although each
    # ticker's newest bar may end at a different minute.
    real_ts = frame["ts"]
    frame["ts"] = real_ts.dt.tz_convert("America/New_York").dt.normalize()
    frame = add_cross_sectional(frame)
    frame["ts"] = real_ts  # feature_ts (from features_for_group) already is its epoch
    return frame
