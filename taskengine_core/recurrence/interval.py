"""Minute and hour repeats: elapsed time, not wall-clock time (RELIABILITY #7).

``every: hour`` fires every 3600 s of real time, so on a fall-back night it fires at 01:00 EDT
and again at 01:00 EST, and on a spring-forward night it goes 01:00 EST → 03:00 EDT.

Without ``between`` the fires are ``anchor + k × step``; the anchor is ``start`` if given, else
local midnight of Monday 2000-01-03 in the schedule's zone: fixed, so results never depend on
"now". Hourly steps therefore stay on the hour through whole-hour DST shifts, and move to :30
across Lord Howe's 30-minute one, as elapsed time demands.

With ``between: [from, until]`` each eligible day has its own window: it opens at the wall time
``from`` (DST rules of ``dst.resolve``) and fires every step of elapsed time while before the
wall time ``until`` (exclusive). ``until`` earlier than ``from`` means the window runs past
midnight into the next day; the window belongs to the day it opens. ``start`` and ``end`` bound
the fires; they do not move the windows.

``days`` and ``months`` keep a fire only if its local date (the window's opening date, with
``between``) matches.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from .dst import resolve
from .rrule_based import ANCHOR
from .spec import Spec

_TINY = timedelta(microseconds=1)
_DAY = timedelta(days=1)
_SEARCH_DAYS = 800  # every weekday occurs in every month, so a year always holds an open window


class ElapsedSchedule:
    def __init__(self, spec: Spec, end: datetime | None = None):
        self.zone: ZoneInfo = spec.zone
        self.step = timedelta(**{f"{spec.unit}s": spec.interval})
        self.days = frozenset(spec.days)
        self.months = frozenset(spec.months)
        self.filtered = bool(self.days or self.months)
        self.start = resolve(spec.start, self.zone) if spec.start else None
        self.end = end if end is not None else (resolve(spec.end, self.zone) if spec.end else None)
        self.anchor = self.start or resolve(datetime.combine(ANCHOR, time(0)), self.zone)
        self.window = spec.between
        self._last_window: tuple[date, datetime, datetime] | None = None

    def _window_of(self, day: date) -> tuple[datetime, datetime]:
        """(opening, closing) instants of ``day``'s window; the last one is kept, as
        consecutive calls mostly ask about the same day."""
        cached = self._last_window
        if cached is not None and cached[0] == day:
            return cached[1], cached[2]
        opens, until = self.window
        first = resolve(datetime.combine(day, opens), self.zone)
        close = resolve(datetime.combine(day + _DAY if until <= opens else day, until), self.zone)
        self._last_window = (day, first, close)
        return first, close

    def _date_ok(self, day: date) -> bool:
        if self.days and day.weekday() not in self.days:
            return False
        return not self.months or day.month in self.months

    def next_after(self, t: datetime) -> datetime | None:
        if self.start is not None and t < self.start:
            t = self.start - _TINY
        found = self._windowed(t) if self.window else self._lattice(t)
        if found is None or (self.end is not None and found > self.end):
            return None
        return found

    def _lattice(self, t: datetime) -> datetime | None:
        for _ in range(_SEARCH_DAYS):
            candidate = self.anchor + ((t - self.anchor) // self.step + 1) * self.step
            if not self.filtered:
                return candidate
            day = candidate.astimezone(self.zone).date()
            if self._date_ok(day):
                return candidate
            if self.end is not None and candidate > self.end:
                return None
            day += _DAY
            while not self._date_ok(day):
                day += _DAY
            # Jump to just before the next eligible local midnight; never backwards (a
            # midnight fall back can put that midnight before the candidate).
            t = max(candidate, resolve(datetime.combine(day, time(0)), self.zone) - _TINY)
        return None

    def _windowed(self, t: datetime) -> datetime | None:
        day = t.astimezone(self.zone).date() - _DAY  # yesterday's window may still be open
        for _ in range(_SEARCH_DAYS):
            if self._date_ok(day):
                first, close = self._window_of(day)
                if self.end is not None and first > self.end:
                    return None
                if close > t:
                    candidate = first
                    if t >= first:
                        candidate += ((t - first) // self.step + 1) * self.step
                    if candidate < close:
                        return candidate
            day += _DAY
        return None

