"""Local wall-clock times to UTC instants under the DST rules of RELIABILITY #7.

A wall-clock slot fires at the first instant the zone's clock reaches it:

- a time that occurs twice (fall back) fires once, at its first occurrence (``fold=0``);
- a time that does not exist (spring forward, or a skipped day such as Pacific/Apia on
  2011-12-30) fires once, at the first instant after the gap. Every slot inside one gap, and a
  slot at the exact end of the gap, therefore share one fire time and fire once together.

The map is non-decreasing in wall time, which is what makes ``next_after`` a single search.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

UTC = timezone.utc
_SECOND = timedelta(seconds=1)


def resolve(local: datetime, zone: ZoneInfo) -> datetime:
    """The UTC instant at which the naive wall time ``local`` in ``zone`` fires."""
    first = local.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if first.astimezone(zone).replace(tzinfo=None) == local:
        return first  # exists; for an ambiguous time fold=0 is the first occurrence
    return _gap_end(local, zone)


def _gap_end(local: datetime, zone: ZoneInfo) -> datetime:
    # PEP 495: inside a gap, fold=0 applies the offset from before the transition and fold=1
    # the one after; the transition instant lies between the two readings, after the earlier
    # one. zoneinfo does not expose transitions, and tzdata's fall on whole seconds: bisect.
    readings = [local.replace(tzinfo=zone, fold=fold).astimezone(UTC) for fold in (0, 1)]
    lo, hi = min(readings), max(readings)
    after = hi.astimezone(zone).utcoffset()
    while hi - lo > _SECOND:
        mid = lo + (hi - lo) // 2
        mid = mid.replace(microsecond=0)
        if mid <= lo:
            mid = lo + _SECOND
        if mid.astimezone(zone).utcoffset() == after:
            hi = mid
        else:
            lo = mid
    return hi


def as_utc(t: datetime) -> datetime:
    if not isinstance(t, datetime) or t.tzinfo is None or t.utcoffset() is None:
        raise ValueError(f"expected a timezone-aware datetime, got {t!r}")
    return t.astimezone(UTC)


def wall_time(instant: datetime, zone: ZoneInfo) -> datetime:
    """The naive local wall time of an aware instant (fold dropped)."""
    return instant.astimezone(zone).replace(tzinfo=None, fold=0)


class WallClockSchedule:
    """``next_after`` for any source of wall-clock slots (naive datetimes in ascending order).

    ``source.first_after(w)`` returns the first slot strictly after naive ``w`` or None.
    ``start``/``end`` bound the slots (inclusive), in wall time.
    """

    def __init__(self, source, zone: ZoneInfo, start: datetime | None, end: datetime | None):
        self.source = source
        self.zone = zone
        self.start = start
        self.end = end
        self._start_floor = start - timedelta(microseconds=1) if start else None

    def next_after(self, t: datetime) -> datetime | None:
        wall = wall_time(t, self.zone)
        if self._start_floor is not None and wall < self._start_floor:
            wall = self._start_floor
        end, zone, first_after = self.end, self.zone, self.source.first_after
        while True:
            slot = first_after(wall)
            if slot is None or (end is not None and slot > end):
                return None
            instant = resolve(slot, zone)
            if instant > t:
                return instant
            # Only when t is in the repeated hour of a fall back: slots between t's wall time
            # and the end of the repeat already fired at their first occurrence.
            wall = slot
