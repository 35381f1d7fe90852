"""The repeat model for day, week, month and year units: dateutil rrules of dates × times of day.

Which dates: an rrule (or a union of rrules, because rrule intersects ``bymonthday`` with
``byweekday`` while a list like ``[1, "last friday"]`` means either). Which times: every ``at``
on each of those dates (rrule's byhour × byminute would pair the wrong hours and minutes).

Intervals count from an anchor: the ``start`` date if given, else Monday 2000-01-03, so
``every: 2 weeks`` without a start fires in the weeks an even number of weeks from that Monday,
whatever "now" is. Months count from the anchor's month, years from its year.

dateutil iterates from ``dtstart`` on every call, so each chunk builds its rrules with a
``dtstart`` moved forward to the last interval boundary on the anchor's lattice before the
query. That yields the same dates as the original rule and keeps the cost independent of how
far the query is from the start.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from heapq import merge

from dateutil.rrule import DAILY, MONTHLY, WEEKLY, YEARLY, rrule, weekday

from .schema import occurs
from .slots import ChunkedSlots, take_after
from .spec import Spec

ANCHOR = date(2000, 1, 3)  # a Monday
_FREQ = {"day": DAILY, "week": WEEKLY, "month": MONTHLY, "year": YEARLY}


def effective_unit(spec: Spec) -> tuple[str, int]:
    """``every: 7 days`` with ``days: [fri]`` means Fridays: a multiple of 7 days is whole weeks."""
    if spec.unit == "day" and spec.days and spec.interval % 7 == 0:
        return "week", spec.interval // 7
    return spec.unit, spec.interval


def date_rules(spec: Spec) -> list[dict]:
    """rrule keyword sets (without dtstart) whose union is the schedule's dates."""
    unit, interval = effective_unit(spec)
    base: dict = {"freq": _FREQ[unit], "interval": interval, "wkst": 0}
    start = spec.start
    if spec.months:
        base["bymonth"] = spec.months
    if unit == "day":
        return [{**base, "byweekday": spec.days or None}]
    if unit == "week":
        return [{**base, "byweekday": spec.days or (start.weekday() if start else 0,)}]
    if unit == "year" and not spec.months:
        base["bymonth"] = (start.month if start else 1,)
    days = tuple(d[1] for d in spec.day_of_month if d[0] == "day")
    nth = tuple(weekday(d[1], d[2]) for d in spec.day_of_month if d[0] == "nth")
    if not days and not nth:
        if spec.days:
            return [{**base, "byweekday": spec.days}]
        days = (start.day if start else 1,)
    rules = []
    # A day that never occurs in these months (30 next to "last friday" in February) must not
    # become a rule: rrule would search it all the way to the year 9999.
    if days and not occurs(days, base.get("bymonth") or range(1, 13)):
        days = ()
    if days:  # with `days` as well, a date must match both: "Friday the 13th"
        rules.append({**base, "bymonthday": days, "byweekday": spec.days or None})
    if nth:
        rules.append({**base, "byweekday": nth})
    return rules


class RRuleSlots(ChunkedSlots):
    def __init__(self, spec: Spec, end: datetime | None):
        super().__init__(end)
        self.unit, self.interval = effective_unit(spec)
        self.rules = date_rules(spec)
        self.start_date = spec.start.date() if spec.start else None
        self.anchor = self.start_date or ANCHOR
        if spec.at:
            self.times = spec.at
        else:
            self.times = (spec.start.time() if spec.start else time(0),)

    def _lattice_start(self, day: date) -> date:
        """The start of the interval period containing ``day`` on the anchor's lattice."""
        n, anchor = self.interval, self.anchor
        if self.unit == "day":
            return anchor + timedelta(days=(day - anchor).days // n * n)
        if self.unit == "week":
            monday = anchor - timedelta(days=anchor.weekday())
            weeks = (day - timedelta(days=day.weekday()) - monday).days // 7
            return monday + timedelta(weeks=weeks // n * n)
        if self.unit == "month":
            months = (day.year - anchor.year) * 12 + day.month - anchor.month
            year, month0 = divmod(anchor.year * 12 + anchor.month - 1 + months // n * n, 12)
            return date(year, month0 + 1, 1)
        return date(anchor.year + (day.year - anchor.year) // n * n, 1, 1)

    def _dates(self, first: date):
        if not self.rules:  # only an impossible day of the month (check_schedule reports it)
            return
        dtstart = self._lattice_start(first)
        if self.start_date and dtstart < self.start_date:
            dtstart = self.start_date
        begin = datetime.combine(dtstart, time(0))
        rules = [rrule(dtstart=begin, **kwargs) for kwargs in self.rules]
        previous = None
        for value in rules[0] if len(rules) == 1 else merge(*rules):
            if value != previous and value.date() >= first:
                yield value.date()
            previous = value

    def _slots(self, first: date):
        for day in self._dates(first):
            for tod in self.times:
                yield datetime.combine(day, tod)

    def generate(self, w, k, end):
        first = w.date()
        if self.start_date and first < self.start_date:
            first = self.start_date
        return take_after(self._slots(first), w, k, end)
