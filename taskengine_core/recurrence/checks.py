"""Semantic checks of a parsed schedule: what the schema cannot say."""

from __future__ import annotations

import calendar
from datetime import datetime, timedelta

from .cron import day_month_sets
from .schema import occurs
from .dst import UTC, resolve
from .spec import Problems, Spec, fmt_local

NEVER = "this schedule can never fire"
_LONG_AGO = datetime(1900, 1, 1, tzinfo=UTC)


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def never_occurs(days: list[int], months: list[int]) -> str | None:
    """A message when no listed day of the month exists in any listed month, else None."""
    if occurs(days, months):
        return None
    day_text = f"day {days[0]}" if len(days) == 1 else "days " + _join([str(d) for d in days])
    verb = "occurs" if len(days) == 1 else "occur"
    month_text = _join([calendar.month_name[m] for m in months])
    return f"{day_text} of {month_text} never {verb}: {NEVER}"


def _every(spec: Spec) -> str:
    return spec.unit if spec.interval == 1 else f"{spec.interval} {spec.unit}s"


def semantic_problems(spec: Spec) -> Problems:
    problems: Problems = []
    if spec.kind != "repeat":
        for key in ("days", "day_of_month", "months", "at", "between"):
            if getattr(spec, key):
                message = f"'{key}' only applies to repeat schedules ('every'), not '{spec.kind}'"
                problems.append((key, message))
    if spec.kind == "once":
        for key in ("start", "end", "count"):
            if getattr(spec, key) is not None:
                problems.append(
                    (key, f"'{key}' does not apply to a once schedule: it fires at 'once'")
                )
        return problems
    if spec.end is not None and spec.count is not None:
        problems.append(("count", "use either 'end' or 'count', not both"))
    if spec.count is not None and spec.start is None:
        problems.append(("count", "'count' needs a 'start': occurrences are counted from it"))
    if spec.start and spec.end and spec.end < spec.start:
        problems.append(
            ("end", f"end {fmt_local(spec.end)} is before start {fmt_local(spec.start)}: {NEVER}")
        )
    if spec.kind == "cron":
        sets = day_month_sets(spec.cron)
        message = sets and never_occurs(*sets)
        if message:
            problems.append(("cron", f"cron expression '{spec.cron}': {message}"))
        return problems
    every = _every(spec)
    if spec.unit in ("minute", "hour"):
        if spec.at:
            message = f"'at' does not apply to every {every}: use 'between' to limit the hours"
            problems.append(("at", message))
        if spec.day_of_month:
            message = f"'day_of_month' does not apply to every {every}: use 'days' or 'months'"
            problems.append(("day_of_month", message))
        return problems
    if spec.between:
        message = f"'between' only applies to minute and hour repeats: use 'at' for every {every}"
        problems.append(("between", message))
    if spec.day_of_month and spec.unit in ("day", "week"):
        message = f"'day_of_month' needs every: month or every: year, not every {every}"
        problems.append(("day_of_month", message))
        return problems
    nth = [e for e in spec.day_of_month if e[0] == "nth"]
    if nth and spec.days:
        message = "'days' cannot be combined with a weekday in 'day_of_month' ('second tuesday')"
        problems.append(("days", message))
    plain = [e[1] for e in spec.day_of_month if e[0] == "day"]
    if plain and not nth:
        months = list(spec.months)
        if not months and spec.unit == "year":
            months = [spec.start.month if spec.start else 1]
        months = months or list(range(1, 13))
        message = never_occurs(plain, months)
        if message:
            problems.append(("day_of_month", message))
    return problems


def surely_fires(spec: Spec) -> bool:
    """Whether a schedule that passed :func:`semantic_problems` certainly has a fire time,
    decided from its form alone (no dates are generated). True only for forms where that is
    certain: an unbounded (no ``end``, no ``count``) repeat every day or every week. Every
    such day or week holds each weekday, every month and year holds such days, each date has
    at least one time of day, and a wall time always maps to an instant (RELIABILITY #7); a
    ``start`` near the year 9999 is left to the full search."""
    return (spec.kind == "repeat" and spec.unit in ("day", "week") and spec.interval == 1
            and spec.end is None and spec.count is None and not spec.day_of_month
            and (spec.start is None or spec.start.year < 9000))


def never_fires(spec: Spec, recurrence) -> tuple[str, str] | None:
    """Whether a schedule that passed every other check still has no fire time at all.
    ``recurrence`` is the compiled schedule, or a callable that compiles it (called only when
    the form alone does not settle it, see :func:`surely_fires`)."""
    if spec.kind == "once":
        return None  # a one-shot in the past is not an error: it simply has fired
    if surely_fires(spec):
        return None
    if callable(recurrence):
        recurrence = recurrence()
    origin = resolve(spec.start, spec.zone) if spec.start else _LONG_AGO
    if recurrence.next_after(origin - timedelta(microseconds=1)) is not None:
        return None
    if spec.end is not None:
        span = f"from start {fmt_local(spec.start)} " if spec.start else ""
        return ("end", f"no fire time {span}until end {fmt_local(spec.end)}: {NEVER}")
    return ("cron" if spec.kind == "cron" else "every", f"no date ever matches: {NEVER}")
