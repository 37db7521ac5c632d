"""Date segments derived from the data, so any universe's date range works.

A config's ``segments`` is either explicit inclusive dates::

    segments: {train: ["2000-03-01", "2008-12-31"], valid: [...], test: [...]}

or fractions of the trading dates the data holds (time-ordered, never random)::

    segments: {fractions: {train: 0.6, valid: 0.2, test: 0.2}}

:func:`resolve_segments` turns either into explicit dates for a given set of trading dates;
between consecutive segments it leaves a purge gap of ``gap`` dates (the longest label
horizon), so no training label overlaps a validation row. :func:`scale_walkforward` shrinks
the walk-forward windows of a config proportionally when the history is too short for them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import pandas as pd

NAMES = ("train", "valid", "test")
#: Fewest trading dates per segment after resolving (below this a metric means nothing).
MIN_SEGMENT_DATES = 10
#: Walk-forward scaled for short histories aims for this many test folds.
MIN_FOLDS = 2


#: how a config gives its segments: explicit dates, or fractions of the data's dates
SEGMENT_MODES = ("dates", "fractions")


@dataclass
class Segments:
    """Explicit inclusive date segments ``[start, end]`` (ISO dates), each non-empty and
    strictly after the previous one: train < valid < test, never a random split."""

    train: tuple[str, str]
    valid: tuple[str, str]
    test: tuple[str, str]
    mode: str = "dates"

    def __post_init__(self) -> None:
        if self.mode != "dates":
            raise ValueError(f"segments.mode={self.mode!r} with explicit dates; use one of "
                             f"{list(SEGMENT_MODES)} (fractions: {{train: 0.6, ...}})")
        prev_end = None
        for name in NAMES:
            pair = getattr(self, name)
            if not isinstance(pair, list | tuple) or len(pair) != 2:
                raise ValueError(f"segments.{name} must be a [start, end] pair, got {pair!r}")
            pair = tuple(str(x) for x in pair)
            setattr(self, name, pair)
            try:
                lo, hi = (pd.Timestamp(v) for v in pair)
            except ValueError as e:
                raise ValueError(f"segments.{name}: {pair} is not a pair of dates: {e}") from e
            if hi < lo or (prev_end is not None and lo <= prev_end):
                raise ValueError(f"segment {name} {list(pair)} is empty or overlaps the "
                                 "previous one; segments must be ordered train < valid < test")
            prev_end = hi

    @classmethod
    def from_dict(cls, raw: dict | None) -> Segments:
        raw = dict(raw or {})
        mode = raw.pop("mode", "dates")
        if set(raw) != set(NAMES):
            raise ValueError("segments needs train, valid and test [start, end] pairs, got "
                             f"{sorted(raw)}")
        return cls(**raw, mode=mode)

    def resolve(self, dates=None, gap: int = 0) -> dict[str, tuple[str, str]]:
        """``{segment: (start, end)}``: explicit dates need no data (``dates`` ignored)."""
        return {k: getattr(self, k) for k in NAMES}

    def to_dict(self) -> dict:
        return {k: list(getattr(self, k)) for k in NAMES}


@dataclass(frozen=True)
class SegmentFractions:
    """Shares of the trading dates for train, valid and test, in that time order."""

    train: float = 0.6
    valid: float = 0.2
    test: float = 0.2

    def __post_init__(self) -> None:
        vals = [self.train, self.valid, self.test]
        if any(v <= 0 for v in vals) or sum(vals) > 1.0 + 1e-9:
            raise ValueError(f"segment fractions must be > 0 and sum to <= 1, got {vals}")

    def resolve(self, dates, gap: int = 0) -> dict[str, tuple[str, str]]:
        """``{segment: (start, end)}`` for these trading ``dates`` (`resolve_segments`)."""
        return resolve_segments(self, dates, gap).resolve()

    def to_dict(self) -> dict:
        return {"fractions": {k: getattr(self, k) for k in NAMES}}


def parse_segments(raw: dict, where: str = "segments") -> Segments | SegmentFractions:
    """A config's ``segments`` mapping -> :class:`Segments` or :class:`SegmentFractions`.

    Raises:
        ValueError: naming ``where`` and what is wrong.
    """
    raw = dict(raw or {})
    if "fractions" in raw:
        if raw.get("mode") == "fractions":
            raw.pop("mode")
        extra = sorted(set(raw) - {"fractions"})
        if extra:
            raise ValueError(f"{where}: fractions cannot be mixed with {extra}")
        fr = dict(raw["fractions"] or {})
        unknown = sorted(set(fr) - set(NAMES))
        if unknown:
            raise ValueError(f"{where}.fractions: unknown key(s) {unknown}; known {list(NAMES)}")
        try:
            return SegmentFractions(**{k: float(v) for k, v in fr.items()})
        except ValueError as e:
            raise ValueError(f"{where}: {e}") from e
    try:
        return Segments.from_dict(raw)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{where}: {e} (or fractions: {{train: 0.6, valid: 0.2, test: 0.2}})"
                         ) from e


def _dates(dates) -> list[pd.Timestamp]:
    idx = pd.DatetimeIndex(pd.unique(pd.Series(dates)))
    idx = idx.tz_localize(None) if idx.tz is not None else idx
    return list(idx.normalize().sort_values().unique())


def resolve_segments(spec: Segments | SegmentFractions, dates, gap: int = 0) -> Segments:
    """Explicit segments for these trading ``dates``.

    Args:
        spec: explicit dates (returned as they are) or fractions.
        dates: the trading dates of the data (any order, duplicates allowed).
        gap: purge dates left out between train/valid and valid/test (the label horizon).

    Raises:
        ValueError: too few dates for segments of :data:`MIN_SEGMENT_DATES` each.
    """
    if isinstance(spec, Segments):
        return spec
    d = _dates(dates)
    usable = len(d) - 2 * gap
    sizes = [int(usable * getattr(spec, k)) for k in NAMES]
    if min(sizes) < MIN_SEGMENT_DATES:
        raise ValueError(f"{len(d)} trading dates give segments of {sizes} dates (fractions "
                         f"{spec.to_dict()['fractions']}, purge gap {gap}); each needs "
                         f">= {MIN_SEGMENT_DATES}: use more history or explicit segments")
    out, i = {}, 0
    for k, n in zip(NAMES, sizes, strict=True):
        out[k] = (str(d[i].date()), str(d[i + n - 1].date()))
        i += n + gap
    return Segments(**out)


def scale_walkforward(wf, n_dates: int, horizon: int):
    """``wf`` (a ``WalkForwardConfig``) with train/valid/test windows shrunk in proportion when
    ``n_dates`` trading dates hold fewer than :data:`MIN_FOLDS` folds; unchanged otherwise.

    Raises:
        ValueError: even scaled, a window would be shorter than :data:`MIN_SEGMENT_DATES`.
    """
    need = wf.train_days + wf.valid_days + MIN_FOLDS * wf.test_days + 2 * horizon
    if n_dates >= need:
        return wf
    s = (n_dates - 2 * horizon) / (wf.train_days + wf.valid_days + MIN_FOLDS * wf.test_days)
    days = {k: int(getattr(wf, k) * s) for k in ("train_days", "valid_days", "test_days")}
    if min(days.values()) < MIN_SEGMENT_DATES:
        raise ValueError(f"{n_dates} trading dates are too few for a walk-forward "
                         f"(scaled windows {days}); each needs >= {MIN_SEGMENT_DATES}")
    return replace(wf, **days)
