"""``compile_schedule``/``check_schedule`` and the compiled ``Recurrence``."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from .checks import never_fires, semantic_problems
from .cron import CronSlots
from .describe import describe
from .dst import WallClockSchedule, as_utc
from .interval import ElapsedSchedule
from .once import OnceSlots
from .rrule_based import RRuleSlots
from .spec import Problems, Spec, parse_spec

_TINY = timedelta(microseconds=1)


class Recurrence:
    """A compiled schedule. ``next_after`` is cheap: call it once per fire."""

    timezone: ZoneInfo

    def __init__(self, spec: Spec):
        self.spec = spec
        self.timezone = spec.zone
        self.catch_up: str = spec.catch_up
        self.max_lateness: float | None = spec.max_lateness  # seconds, None = no limit
        self.enabled: bool = spec.enabled
        self.description: str | None = spec.description
        self._summary = describe(spec)
        self._schedule = _build(spec)

    def next_after(self, t: datetime) -> datetime | None:
        """The first fire time strictly after aware ``t``, in UTC; None when there is none left."""
        try:
            return self._schedule.next_after(as_utc(t))
        except OverflowError:  # beyond year 9999
            return None

    def upcoming(self, after: datetime, count: int) -> list[datetime]:
        """The next ``count`` fire times after ``after`` (fewer if the schedule ends), in UTC."""
        out: list[datetime] = []
        t = as_utc(after)
        while len(out) < count:
            found = self.next_after(t)
            if found is None:
                break
            out.append(found)
            t = found
        return out

    def describe(self) -> str:
        return self._summary

    def __repr__(self) -> str:
        return f"<Recurrence {self._summary}>"


def _slots(spec: Spec, end: datetime | None):
    if spec.kind == "once":
        return OnceSlots(spec.once)
    if spec.kind == "cron":
        return CronSlots(spec.cron, end)
    return RRuleSlots(spec, end)


def _build(spec: Spec):
    """The schedule object; ``count`` becomes the inclusive end it implies (counted once here)."""
    if spec.kind == "repeat" and spec.unit in ("minute", "hour"):
        if spec.count is None:
            return ElapsedSchedule(spec)
        probe, t = ElapsedSchedule(spec), None
        cursor = probe.start - _TINY
        for _ in range(spec.count):
            t = probe.next_after(cursor)
            if t is None:
                break
            cursor = t
        return ElapsedSchedule(spec, end=cursor if t is None else t)
    end = spec.end
    if spec.count is not None:
        # Counted in wall-clock slots: two slots sharing one fire time (the slots in a DST gap)
        # use up two of the count.
        probe, cursor = _slots(spec, None), spec.start - _TINY
        for _ in range(spec.count):
            found = probe.first_after(cursor)
            if found is None:
                break
            cursor = found
        end = cursor
    return WallClockSchedule(_slots(spec, end), spec.zone, spec.start, end)


def _parse(spec: dict, default_timezone: str) -> tuple[Spec | None, Problems]:
    parsed, problems = parse_spec(spec, default_timezone)
    if parsed is not None:
        problems = semantic_problems(parsed)
    return (parsed if not problems else None), problems


def compile_schedule(spec: dict, default_timezone: str = "UTC") -> Recurrence:
    """Compile one schedule object; ``ValueError`` lists every problem (``path: message``)."""
    parsed, problems = _parse(spec, default_timezone)
    if parsed is None:
        raise ValueError("; ".join(f"{path}: {text}" if path else text for path, text in problems))
    return Recurrence(parsed)


_CHECKED: dict[tuple[str, str], list[tuple[str, str]]] = {}


def check_schedule(spec: dict, default_timezone: str = "UTC", *, text: str | None = None) -> list[tuple[str, str]]:
    """Semantic problems of a schema-valid schedule as ``(path, message)``; empty when fine.

    Beyond ``compile_schedule`` this also looks for a first fire time, so a schedule whose
    filters or ``start``/``end`` leave no occurrence at all is reported.

    Memoized by definition (plain JSON values only): validating 100,000 schedules written
    alike checks each distinct one once. ``text``: the caller's canonical JSON of ``spec``
    (sorted keys), when it has one, so it is not encoded again.
    """
    try:
        key = (text if text is not None else json.dumps(spec, sort_keys=True), default_timezone)
    except (TypeError, ValueError):  # a YAML date object, say: not memoized
        return _check_schedule(spec, default_timezone)
    found = _CHECKED.get(key)
    if found is None:
        if len(_CHECKED) >= 10_000:
            _CHECKED.clear()
        found = _CHECKED[key] = _check_schedule(spec, default_timezone)
    return list(found)


def _check_schedule(spec: dict, default_timezone: str) -> list[tuple[str, str]]:
    parsed, problems = _parse(spec, default_timezone)
    if parsed is None:
        return problems
    found = never_fires(parsed, lambda: Recurrence(parsed))
    return [found] if found else []
