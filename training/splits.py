"""Time-ordered train/valid/test splits with a purge gap (never random).

Everything works on the *unique sorted trading dates* of a panel, so gaps count trading days
(rows per ticker), not calendar days. A label ``fwd_ret_{h}d`` at date index ``i`` spans the
closes at ``i`` .. ``i + h``; its *label window* is the dates ``i + 1 .. i + h``.

Purge rule: a training row whose label window reaches into the next segment (validation or
test) is removed, i.e. a row at date index ``i`` survives only if ``i + h < start_of_next``.
On a full panel (every ticker trades every date) that is a gap of exactly ``h`` trading dates
between the last training date and the first validation date. The *embargo* is that gap in
trading dates; it defaults to ``horizon`` and may be larger (extra safety against serially
correlated features), never smaller. Rows of a ticker with missing dates are purged on the
ticker's own row count (`purge_mask`), so a halted ticker whose ``h``-th next row lands in the
validation segment is dropped too.

The same rule applies between validation and test: validation labels must not see test prices,
or model selection leaks.

Typical use::

    folds = walk_forward(panel["ts"], train_days=504, valid_days=63, test_days=63,
                         step_days=63, horizon=5)
    for fold in folds:
        train, valid, test = fold.split(panel)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


def trading_dates(dates) -> pd.DatetimeIndex:
    """Unique sorted trading dates of a ``ts`` column / array / index.

    Args:
        dates: anything ``pd.DatetimeIndex`` accepts (a panel's ``ts`` column, a list).

    Returns:
        The unique dates, ascending.
    """
    idx = pd.DatetimeIndex(pd.unique(pd.DatetimeIndex(dates)))
    if idx.hasnans:
        raise ValueError("dates contain NaT; drop rows without a timestamp before splitting")
    return idx.sort_values()


@dataclass(frozen=True)
class Segment:
    """An inclusive date range ``[start, end]`` of trading dates."""

    start: pd.Timestamp
    end: pd.Timestamp
    n_dates: int

    def contains(self, ts) -> np.ndarray:
        """Boolean mask of the timestamps that fall in ``[start, end]``."""
        t = pd.DatetimeIndex(ts)
        return np.asarray((t >= self.start) & (t <= self.end))

    def to_dict(self) -> dict:
        return {
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "n_dates": self.n_dates,
        }


def _segment(dates: pd.DatetimeIndex, lo: int, hi: int) -> Segment:
    """Segment of ``dates[lo:hi]`` (``hi`` exclusive)."""
    return Segment(dates[lo], dates[hi - 1], hi - lo)


def label_end(
    frame: pd.DataFrame, horizon: int, *, ts_col: str = "ts", ticker_col: str = "ticker"
) -> pd.Series:
    """Date of the close that ends each row's ``horizon``-row label (NaT if beyond the data).

    Counted in the ticker's own rows, so a ticker with missing dates reaches further in time.

    Args:
        frame: long panel; pass the *full* panel, not an already-cut segment.
        horizon: label horizon in trading days (rows per ticker).

    Returns:
        Series aligned to ``frame.index``.
    """
    if horizon < 0:
        raise ValueError(f"horizon must be >= 0, got {horizon}")
    tmp = pd.DataFrame(
        {
            "k": frame[ticker_col].to_numpy(),
            "ts": pd.to_datetime(frame[ts_col]).reset_index(drop=True),
            "pos": np.arange(len(frame)),
        }
    ).sort_values(["k", "ts"], kind="stable")
    ends = tmp.groupby("k", sort=False)["ts"].shift(-horizon)
    # ends is indexed by original position (tmp had a RangeIndex before sorting)
    return pd.Series(ends.sort_index().array, index=frame.index, name="label_end")


def purge_mask(
    frame: pd.DataFrame,
    horizon: int,
    next_start: pd.Timestamp | None,
    *,
    ts_col: str = "ts",
    ticker_col: str = "ticker",
    ends: pd.Series | None = None,
) -> np.ndarray:
    """True for rows whose label window ends strictly before ``next_start``.

    Rows whose label end is unknown (the ticker has fewer than ``horizon`` later rows) are
    purged as well: their label cannot be trusted not to reach ``next_start``.

    Args:
        frame: full long panel.
        horizon: label horizon in trading days.
        next_start: first date of the following segment; ``None`` keeps every row.
        ends: ``label_end(frame, horizon)`` when the caller already has it (it does not
            depend on ``next_start``).
    """
    if next_start is None:
        return np.ones(len(frame), dtype=bool)
    if ends is None:
        ends = label_end(frame, horizon, ts_col=ts_col, ticker_col=ticker_col)
    return np.asarray(ends.notna() & (ends < next_start))


@dataclass(frozen=True)
class Fold:
    """One walk-forward fold: explicit train / valid / (test) date segments.

    ``train`` and ``valid`` already leave ``embargo`` trading dates between them (and between
    ``valid`` and ``test``); the masks additionally purge per ticker (see `purge_mask`).
    """

    index: int
    train: Segment
    valid: Segment
    test: Segment | None
    horizon: int
    embargo: int

    def _mask(self, frame, seg: Segment, next_seg: Segment | None, ts_col, ticker_col,
              ends=None):
        m = seg.contains(frame[ts_col])
        if next_seg is not None:
            m &= purge_mask(
                frame, self.horizon, next_seg.start, ts_col=ts_col, ticker_col=ticker_col,
                ends=ends,
            )
        return m

    def train_mask(
        self, frame: pd.DataFrame, *, ts_col: str = "ts", ticker_col: str = "ticker"
    ) -> np.ndarray:
        """Rows in the train segment whose label ends before the validation start."""
        return self._mask(frame, self.train, self.valid, ts_col, ticker_col)

    def valid_mask(
        self, frame: pd.DataFrame, *, ts_col: str = "ts", ticker_col: str = "ticker"
    ) -> np.ndarray:
        """Rows in the valid segment (purged against the test start when there is a test)."""
        return self._mask(frame, self.valid, self.test, ts_col, ticker_col)

    def test_mask(self, frame: pd.DataFrame, *, ts_col: str = "ts") -> np.ndarray:
        """Rows in the test segment (all False when the fold has no test segment)."""
        if self.test is None:
            return np.zeros(len(frame), dtype=bool)
        return self.test.contains(frame[ts_col])

    def split(
        self, frame: pd.DataFrame, *, ts_col: str = "ts", ticker_col: str = "ticker"
    ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame | None]:
        """``(train, valid, test)`` sub-frames; ``test`` is None without a test segment.
        The label ends both purges compare against are computed once."""
        ends = label_end(frame, self.horizon, ts_col=ts_col, ticker_col=ticker_col)
        train = frame[self._mask(frame, self.train, self.valid, ts_col, ticker_col, ends)]
        valid = frame[self._mask(frame, self.valid, self.test, ts_col, ticker_col, ends)]
        test = None if self.test is None else frame[self.test_mask(frame, ts_col=ts_col)]
        return train, valid, test

    def to_dict(self) -> dict:
        """JSON-ready description (for run logs and reports)."""
        return {
            "index": self.index,
            "train": self.train.to_dict(),
            "valid": self.valid.to_dict(),
            "test": None if self.test is None else self.test.to_dict(),
            "horizon": self.horizon,
            "embargo": self.embargo,
        }


def _resolve_embargo(horizon: int, embargo: int | None) -> int:
    if horizon < 0:
        raise ValueError(f"horizon must be >= 0, got {horizon}")
    gap = horizon if embargo is None else int(embargo)
    if gap < horizon:
        raise ValueError(
            f"embargo={embargo} < horizon={horizon}: training labels would overlap the next "
            f"segment; use embargo >= horizon or leave it None (= horizon)"
        )
    return gap


def _index_of(dates: pd.DatetimeIndex, when, name: str) -> int:
    """Index of the first trading date >= ``when``."""
    ts = pd.Timestamp(when)
    if ts.tzinfo is None and dates.tz is not None:
        ts = ts.tz_localize(dates.tz)
    i = int(dates.searchsorted(ts, side="left"))
    if i >= len(dates):
        raise ValueError(f"{name}={when} is after the last date {dates[-1]}")
    return i


def walk_forward(
    dates,
    *,
    horizon: int,
    valid_days: int,
    test_days: int = 0,
    step_days: int | None = None,
    train_days: int | None = None,
    train_start=None,
    first_valid_start=None,
    embargo: int | None = None,
    expanding: bool = True,
    max_folds: int | None = None,
) -> list[Fold]:
    """Walk-forward folds over trading dates: train | gap | valid | gap | test, then step.

    The first fold's training window starts at ``train_start`` (default: first date) and holds
    ``train_days`` dates, or ends ``embargo`` dates before ``first_valid_start``. Each next
    fold moves every boundary forward by ``step_days``; with ``expanding=True`` the training
    start stays put (anchored), with ``expanding=False`` it moves too (rolling window of the
    first fold's length). Folds stop when the last segment would run past the data; partial
    segments are never produced.

    Args:
        dates: the panel's ``ts`` column (or any dates); unique sorted dates are used.
        horizon: label horizon in trading days; sets the purge.
        valid_days: validation segment length in trading dates.
        test_days: test segment length; 0 gives train/valid folds only.
        step_days: shift between folds; default ``test_days`` or, without test, ``valid_days``
            (so evaluation segments tile without overlap).
        train_days: length of the first training window in trading dates.
        train_start: first training date (default: first date).
        first_valid_start: alternative to ``train_days``: the first fold's valid start date.
        embargo: trading dates left empty between segments; default and minimum ``horizon``.
        expanding: anchored (True) or rolling (False) training window.
        max_folds: keep at most this many folds (the earliest ones).

    Returns:
        Folds in time order; empty list never: raises ``ValueError`` if no fold fits.
    """
    d = trading_dates(dates)
    gap = _resolve_embargo(horizon, embargo)
    if valid_days < 1 or test_days < 0:
        raise ValueError(f"need valid_days >= 1 and test_days >= 0, got {valid_days}, {test_days}")
    step = step_days if step_days is not None else (test_days or valid_days)
    if step < 1:
        raise ValueError(f"step_days must be >= 1, got {step}")
    s0 = 0 if train_start is None else _index_of(d, train_start, "train_start")
    if (train_days is None) == (first_valid_start is None):
        raise ValueError("give exactly one of train_days or first_valid_start")
    if train_days is not None:
        train_end0 = s0 + int(train_days)  # exclusive
    else:
        train_end0 = _index_of(d, first_valid_start, "first_valid_start") - gap
    if train_end0 - s0 < 1:
        raise ValueError(
            f"first training window is empty (start index {s0}, end {train_end0}"
            f"); move first_valid_start later or lower the embargo"
        )
    train_len = train_end0 - s0
    folds: list[Fold] = []
    k = 0
    while max_folds is None or k < max_folds:
        t_end = train_end0 + k * step
        t_start = s0 if expanding else t_end - train_len
        v0 = t_end + gap
        v1 = v0 + valid_days
        if test_days:
            x0, x1 = v1 + gap, v1 + gap + test_days
            if x1 > len(d):
                break
            test = _segment(d, x0, x1)
        else:
            if v1 > len(d):
                break
            test = None
        folds.append(Fold(k, _segment(d, t_start, t_end), _segment(d, v0, v1), test, horizon, gap))
        k += 1
    if not folds:
        need = train_len + gap + valid_days + (gap + test_days if test_days else 0)
        raise ValueError(
            f"no fold fits: {len(d) - s0} dates available after train_start, one fold needs {need}"
        )
    return folds


def time_split(
    dates,
    *,
    horizon: int,
    valid_frac: float | None = None,
    valid_start=None,
    embargo: int | None = None,
) -> Fold:
    """One time-ordered train/valid split with purge (the walking skeleton's split).

    The validation segment is the last ``valid_frac`` of trading dates (or starts at
    ``valid_start``) and runs to the last date; training ends ``embargo`` dates earlier.

    Args:
        dates: the panel's ``ts`` column (or any dates).
        horizon: label horizon in trading days.
        valid_frac: fraction of trading dates (0, 1) for validation.
        valid_start: alternative: first validation date.
        embargo: gap in trading dates; default and minimum ``horizon``.

    Returns:
        A `Fold` with ``test=None``; use ``fold.train_mask(panel)`` / ``fold.valid_mask``.
    """
    d = trading_dates(dates)
    gap = _resolve_embargo(horizon, embargo)
    if (valid_frac is None) == (valid_start is None):
        raise ValueError("give exactly one of valid_frac or valid_start")
    if valid_frac is not None:
        if not 0.0 < valid_frac < 1.0:
            raise ValueError(f"valid_frac must be in (0, 1), got {valid_frac}")
        v0 = len(d) - max(1, round(len(d) * valid_frac))
    else:
        v0 = _index_of(d, valid_start, "valid_start")
    t_end = v0 - gap
    if t_end < 1:
        raise ValueError(
            f"training segment is empty: validation starts at date index {v0} "
            f"and the purge gap is {gap} dates; use fewer validation dates"
        )
    return Fold(0, _segment(d, 0, t_end), _segment(d, v0, len(d)), None, horizon, gap)


def segment_fold(dates, segments: dict, *, horizon: int, embargo: int | None = None) -> Fold:
    """A `Fold` from an experiment config's explicit date segments (never random).

    ``segments`` is ``{"train": (start, end), "valid": (start, end), "test": (start, end)}``
    with inclusive ISO dates, e.g. ``exp.segments.resolve(dates, gap=horizon)``; an end date
    covers that whole day. The masks purge training rows whose label reaches the valid start
    and valid rows whose label reaches the test start; rows of the test segment are in
    neither mask. A test segment without data rows keeps its configured start, so the valid
    purge still applies.

    Raises:
        ValueError: the train or valid segment holds none of ``dates``.
    """
    d = trading_dates(dates)
    gap = _resolve_embargo(horizon, embargo)

    def stamp(v) -> pd.Timestamp:
        t = pd.Timestamp(v)
        return t.tz_localize(d.tz) if (t.tzinfo is None and d.tz is not None) else t

    segs: dict[str, Segment | None] = {}
    for name in ("train", "valid", "test"):
        if name not in segments or segments[name] is None:
            if name != "test":
                raise ValueError(f"segments lacks {name!r}: give [start, end] dates for it")
            segs[name] = None
            continue
        lo, hi = (stamp(v) for v in segments[name])
        inside = d[(d >= lo) & (d < hi + pd.Timedelta(days=1))]
        if len(inside):
            segs[name] = Segment(inside[0], inside[-1], len(inside))
        elif name == "test":
            segs[name] = Segment(lo, hi, 0)
        else:
            raise ValueError(f"{name} segment {list(segments[name])} holds none of the "
                             f"{len(d)} trading dates {d[0].date()}..{d[-1].date()}; fix the "
                             "config's segments (or use fractions)")
    return Fold(0, segs["train"], segs["valid"], segs["test"], horizon, gap)
