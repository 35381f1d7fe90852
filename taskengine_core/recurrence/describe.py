"""One-line human summaries: "every week on Sat at 17:00 (America/Chicago)"."""

from __future__ import annotations

import calendar
from datetime import time

from .spec import Spec, fmt_local

_ORDINAL_WORDS = {1: "first", 2: "second", 3: "third", 4: "fourth", 5: "fifth", -1: "last"}


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _tod(value: time) -> str:
    return value.isoformat(timespec="seconds" if value.second else "minutes")


def _days(days: tuple[int, ...]) -> str:
    if days == (0, 1, 2, 3, 4):
        return "weekdays"
    if days == (5, 6):
        return "weekends"
    return ", ".join(calendar.day_abbr[d] for d in days)


def _day_of_month(entry: tuple) -> str:
    if entry[0] == "nth":
        return f"the {_ORDINAL_WORDS[entry[2]]} {calendar.day_abbr[entry[1]]}"
    n = entry[1]
    if n == -1:
        return "the last day"
    return f"day {n}" if n > 0 else f"the {-n}{_suffix(-n)} day from the end"


def _suffix(n: int) -> str:
    return "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")


def describe(spec: Spec) -> str:
    zone = f" ({spec.zone_name})"
    if spec.kind == "once":
        return f"once at {fmt_local(spec.once).replace('T', ' ')}{zone}"
    parts = []
    if spec.kind == "cron":
        parts.append(f"cron '{spec.cron}'")
    else:
        unit = spec.unit if spec.interval == 1 else f"{spec.interval} {spec.unit}s"
        parts.append(f"every {unit}")
        start = spec.start
        days, day_of_month, months = spec.days, spec.day_of_month, spec.months
        # Spell out the defaults taken from start (or the anchor): "every week" is not a day.
        if spec.unit == "week" and not days:
            days = (start.weekday() if start else 0,)
        if spec.unit in ("month", "year") and not days and not day_of_month:
            day_of_month = (("day", start.day if start else 1),)
        if spec.unit == "year" and not months:
            months = (start.month if start else 1,)
        if days:
            parts.append(f"on {_days(days)}")
        if day_of_month:
            parts.append("on " + _join([_day_of_month(e) for e in day_of_month]))
        if months:
            parts.append("in " + ", ".join(calendar.month_abbr[m] for m in months))
        if spec.at:
            parts.append("at " + ", ".join(_tod(t) for t in spec.at))
        elif spec.between:
            parts.append(f"between {_tod(spec.between[0])} and {_tod(spec.between[1])}")
        elif spec.unit not in ("minute", "hour"):
            parts.append("at " + _tod(spec.start.time() if spec.start else time(0)))
    if spec.start:
        parts.append("from " + fmt_local(spec.start).replace("T", " "))
    if spec.end:
        parts.append("until " + fmt_local(spec.end).replace("T", " "))
    text = " ".join(parts)
    if spec.count:
        text += f", {spec.count} time{'s' if spec.count != 1 else ''}"
    return text + zone
