"""Parse one schedule object (already schema-valid) into a ``Spec``, collecting every problem."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from taskengine_core.durations import parse_duration

from .cron import cron_problem
from .schema import DAY_OF_MONTH_PATTERN, EVERY_PATTERN, MONTHS, ORDINALS, TIME_PATTERN, WEEKDAYS

Problems = list[tuple[str, str]]

# A day_of_month entry: ("day", n), n in 1..31 or -31..-1; or ("nth", weekday, n), n in 1..5 or -1.
DayOfMonth = tuple

_DATETIME_RE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2}))?)?$")


@dataclass(frozen=True)
class Spec:
    kind: str  # "once" | "cron" | "repeat"
    zone: ZoneInfo
    zone_name: str
    once: datetime | None = None  # local wall time (naive)
    cron: str | None = None
    unit: str | None = None
    interval: int = 1
    days: tuple[int, ...] = ()  # 0 = Monday
    day_of_month: tuple[DayOfMonth, ...] = ()
    months: tuple[int, ...] = ()
    at: tuple[time, ...] = ()
    between: tuple[time, time] | None = None
    start: datetime | None = None  # local wall time (naive)
    end: datetime | None = None  # local wall time (naive), inclusive
    count: int | None = None
    catch_up: str = "once"
    max_lateness: float | None = None
    enabled: bool = True
    description: str | None = None


def load_zone(name: object) -> ZoneInfo | None:
    if not isinstance(name, str) or not name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None


def fmt_local(value: datetime) -> str:
    """``2026-01-01T00:00``, with seconds only when there are some."""
    return value.isoformat(timespec="seconds" if value.second else "minutes")


def parse_local_datetime(value: object, zone: ZoneInfo) -> datetime:
    """A local wall time from ``2026-12-31[T18:00[:SS]]`` or a YAML date/datetime object."""
    if isinstance(value, datetime):
        if value.tzinfo is not None:  # an explicit instant: its wall time in the schedule's zone
            value = value.astimezone(zone).replace(tzinfo=None, fold=0)
        return value.replace(microsecond=0)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day)
    match = _DATETIME_RE.match(value) if isinstance(value, str) else None
    if not match:
        raise ValueError(f"not a local date-time: {value!r}; expected e.g. 2026-12-31T18:00")
    y, mo, d, h, mi, s = (int(g) if g else 0 for g in match.groups())
    try:
        return datetime(y, mo, d, h, mi, s)
    except ValueError as exc:
        raise ValueError(f"invalid date-time {value!r}: {exc}") from None


def parse_time(value: object) -> time:
    if isinstance(value, str) and re.match(TIME_PATTERN, value):
        parts = [int(p) for p in value.split(":")]
        return time(*parts)
    raise ValueError(f"not a time of day: {value!r}; expected HH:MM or HH:MM:SS")


def parse_every(value: object) -> tuple[str, int]:
    match = re.match(EVERY_PATTERN, value.strip().lower()) if isinstance(value, str) else None
    if not match:
        raise ValueError(
            f"not an interval: {value!r}; expected e.g. day, week, '15 minutes', '2 weeks'"
        )
    return match.group(2), int(match.group(1) or 1)


def parse_day_of_month(value: object) -> DayOfMonth:
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= abs(value) <= 31:
        return ("day", value)
    text = " ".join(value.lower().split()) if isinstance(value, str) else ""
    if re.match(DAY_OF_MONTH_PATTERN, text):
        if text in ("first", "last"):
            return ("day", ORDINALS[text])
        ordinal, weekday = text.split(" ")
        return ("nth", WEEKDAYS[weekday], ORDINALS[ordinal])
    raise ValueError(
        f"not a day of the month: {value!r}; "
        "expected 1..31, -1..-31, first, last, or e.g. 'second tuesday'"
    )


def _weekday(value: object) -> int:
    if isinstance(value, str) and value.lower() in WEEKDAYS:
        return WEEKDAYS[value.lower()]
    raise ValueError(f"not a weekday: {value!r}; expected mon, tue, wed, thu, fri, sat or sun")


def _month(value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 12:
        return value
    if isinstance(value, str) and value.lower() in MONTHS:
        return MONTHS[value.lower()]
    raise ValueError(f"not a month: {value!r}; expected 1..12 or jan..dec")


def _as_list(value: object) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _parse_each(spec: dict, key: str, parse, problems: Problems) -> tuple:
    if key not in spec:
        return ()
    out = []
    for item in _as_list(spec[key]):
        try:
            parsed = parse(item)
        except ValueError as exc:
            problems.append((key, str(exc)))
        else:
            if parsed not in out:
                out.append(parsed)
    return tuple(out)


def parse_spec(spec: object, default_timezone: str = "UTC") -> tuple[Spec | None, Problems]:
    """The parsed schedule and every problem found (a ``Spec`` only when there are none)."""
    problems: Problems = []
    if not isinstance(spec, dict):
        return None, [("", f"a schedule must be a mapping, not {type(spec).__name__}")]
    forms = [key for key in ("once", "cron", "every") if key in spec]
    if len(forms) != 1:
        found = " and ".join(repr(k) for k in forms) if forms else "none"
        message = f"a schedule needs exactly one of 'once', 'cron' or 'every' (found {found})"
        problems.append(("", message))
        return None, problems
    kind = {"once": "once", "cron": "cron", "every": "repeat"}[forms[0]]

    zone_name = spec.get("timezone", default_timezone)
    zone = load_zone(zone_name)
    if zone is None:
        problems.append(("timezone", f"unknown time zone {zone_name!r}"))
        zone = ZoneInfo("UTC")

    values: dict = {"kind": kind, "zone": zone, "zone_name": str(zone_name)}
    for key in ("once", "start", "end"):
        if key in spec:
            try:
                values[key] = parse_local_datetime(spec[key], zone)
            except ValueError as exc:
                problems.append((key, str(exc)))
    if kind == "cron":
        values["cron"] = " ".join(str(spec["cron"]).split())
        if not isinstance(spec["cron"], str):
            problems.append(("cron", f"a cron expression must be a string, not {spec['cron']!r}"))
        elif problem := cron_problem(values["cron"]):
            problems.append(("cron", problem))
    if kind == "repeat":
        try:
            values["unit"], values["interval"] = parse_every(spec["every"])
        except ValueError as exc:
            problems.append(("every", str(exc)))
    values["days"] = tuple(sorted(_parse_each(spec, "days", _weekday, problems)))
    values["months"] = tuple(sorted(_parse_each(spec, "months", _month, problems)))
    values["day_of_month"] = _parse_each(spec, "day_of_month", parse_day_of_month, problems)
    values["at"] = tuple(sorted(_parse_each(spec, "at", parse_time, problems)))
    if "between" in spec:
        raw = spec["between"]
        if not isinstance(raw, (list, tuple)) or len(raw) != 2:
            message = f"expected [from, until], e.g. ['08:00', '18:00'], not {raw!r}"
            problems.append(("between", message))
        else:
            try:
                window = (parse_time(raw[0]), parse_time(raw[1]))
            except ValueError as exc:
                problems.append(("between", str(exc)))
            else:
                if window[0] == window[1]:
                    message = f"the window {raw[0]}-{raw[1]} is empty: from and until are the same"
                    problems.append(("between", message))
                values["between"] = window
    if "count" in spec:
        count = spec["count"]
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            problems.append(("count", f"count must be a positive integer, not {count!r}"))
        else:
            values["count"] = count
    catch_up = spec.get("catch_up", "once")
    if catch_up not in ("skip", "once", "all"):
        problems.append(("catch_up", f"catch_up must be skip, once or all, not {catch_up!r}"))
    values["catch_up"] = catch_up
    if spec.get("max_lateness") is not None:
        try:
            values["max_lateness"] = parse_duration(spec["max_lateness"], clamp=True)
        except ValueError as exc:
            problems.append(("max_lateness", str(exc)))
    values["enabled"] = bool(spec.get("enabled", True))
    values["description"] = spec.get("description")
    if problems:
        return None, problems
    return Spec(**values), problems
