"""``stockray news features``: lake text + scores -> daily text features -> Feast, events.

Reads the ``news`` table and the scores of one scorer (default: every scorer, newest score
per record), takes each ticker's trading days from its stored bars (weekdays when it has
none), computes :func:`features.text.daily.text_features`, writes the Feast source file,
registers the view and the opt-in service (in the run's existing Feast repo, whichever online
store it uses; a new SQLite one otherwise), materializes the view online, and appends the
``sentiment_shock`` events to the lake's ``events`` table (the stream's table and format).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import timedelta

import pandas as pd

from features.events import write_events
from features.lake import read_table_once
from features.settings import Settings
from features.store import bump_online_generation
from features.text.daily import sentiment_shocks, text_features
from features.text.records import read_news
from features.text.scoring import read_scores
from features.text.views import TEXT_VIEW, write_text_offline


@dataclass
class TextBuildReport:
    records: int = 0
    scored: int = 0
    rows: int = 0
    tickers: list[str] = field(default_factory=list)
    offline_file: str | None = None
    online_tickers: int = 0
    events: int = 0
    events_file: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def bar_days(settings: Settings, tickers: list[str]) -> dict[str, pd.DatetimeIndex]:
    """Stored daily bar sessions per ticker (only the ``ts`` column is read)."""
    out = {}
    for t in tickers:
        path = settings.bars_dir / f"ticker={t}" / "bars.parquet"
        if path.exists():
            out[t] = pd.DatetimeIndex(read_table_once(path, columns=["ts"]).column("ts")
                                      .to_pandas())
    return out


def materialize_text(store, frame: pd.DataFrame) -> int:
    """Load the text view's rows of ``frame``'s span online; returns the tickers written."""
    if frame.empty:
        return 0
    start = pd.Timestamp(frame["ts"].min()).to_pydatetime() - timedelta(days=1)
    end = pd.Timestamp(frame["ts"].max()).to_pydatetime() + timedelta(days=1)
    store.materialize(start_date=start, end_date=end, feature_views=[TEXT_VIEW])
    tickers = sorted(frame["ticker"].unique())
    bump_online_generation(store.repo_path, tickers, writer="materialize-text")
    return len(tickers)


def _store(settings: Settings):
    """The run's Feast store with the text view registered. An existing repo config is kept
    as it is (``stockray features --online redis`` chose Redis: text goes there too)."""
    from features.feature_repo.definitions import definitions
    from features.store import apply_repo, open_store

    if not (settings.data_dir / "feast" / "feature_store.yaml").exists():
        return apply_repo(settings.data_dir, settings.offline_dir)
    store = open_store(settings.data_dir)
    store.apply(definitions(settings.offline_dir))
    return store


def run_text_features(settings: Settings, scorer: str | None = None, online: bool = True,
                      events: bool = True, shock_threshold: float = 0.5,
                      shock_min_count: int = 3) -> TextBuildReport:
    """Build, store and serve the text features (see the module docstring)."""
    settings = settings.resolved()
    news = read_news(settings.lake_dir, columns=["id", "ts", "tickers", "kind", "form"])
    scores = read_scores(settings.lake_dir, scorer)
    rep = TextBuildReport(records=len(news), scored=int(news["id"].isin(scores["id"]).sum()))
    if news.empty:
        return rep
    tickers = sorted({t for ts in news["tickers"] for t in ts})
    frame = text_features(news, scores, bar_days(settings, tickers))
    rep.rows, rep.tickers = len(frame), sorted(frame["ticker"].unique())
    rep.offline_file = str(write_text_offline(frame, settings.offline_dir))
    if online and len(frame):
        rep.online_tickers = materialize_text(_store(settings), frame)
    if events:
        ev = sentiment_shocks(frame, news, shock_threshold, shock_min_count)
        path = write_events(ev, settings.data_dir)
        rep.events, rep.events_file = len(ev), (str(path) if path else None)
    return rep
