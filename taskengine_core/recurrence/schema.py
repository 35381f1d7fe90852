"""The JSON Schema of one schedule object, and the names and patterns it is built from."""

from __future__ import annotations

from taskengine_core import durations

WEEKDAYS = {
    "mon": 0, "monday": 0, "tue": 1, "tuesday": 1, "wed": 2, "wednesday": 2,
    "thu": 3, "thursday": 3, "fri": 4, "friday": 4, "sat": 5, "saturday": 5,
    "sun": 6, "sunday": 6,
}  # fmt: skip
MONTHS = {
    "jan": 1, "january": 1, "feb": 2, "february": 2, "mar": 3, "march": 3, "apr": 4, "april": 4,
    "may": 5, "jun": 6, "june": 6, "jul": 7, "july": 7, "aug": 8, "august": 8,
    "sep": 9, "september": 9, "oct": 10, "october": 10, "nov": 11, "november": 11,
    "dec": 12, "december": 12,
}  # fmt: skip
ORDINALS = {"first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "last": -1}
MAX_MONTH_DAYS = dict(enumerate((31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31), start=1))


def occurs(days_of_month, months) -> bool:
    """Whether any of the days (1..31 or -1..-31 from the end) exists in any of the months."""
    return any(abs(day) <= MAX_MONTH_DAYS[month] for day in days_of_month for month in months)


UNITS = ("minute", "hour", "day", "week", "month", "year")

TIME_PATTERN = r"^([01]?[0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9])?$"
LOCAL_DATETIME_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}([T ][0-9]{2}:[0-9]{2}(:[0-9]{2})?)?$"
EVERY_PATTERN = r"^([1-9][0-9]*\s+)?(minute|hour|day|week|month|year)s?$"
_WEEKDAY_ALT = "|".join(sorted(WEEKDAYS, key=len, reverse=True))
DAY_OF_MONTH_PATTERN = (
    rf"^(first|last|(first|second|third|fourth|fifth|last)\s+({_WEEKDAY_ALT}))$"
)


def _one_or_many(item: dict) -> dict:
    return {"anyOf": [item, {"type": "array", "items": item, "minItems": 1}]}


_TIME = {
    "type": "string",
    "pattern": TIME_PATTERN,
    "description": "a local time of day, HH:MM or HH:MM:SS",
}
_LOCAL_DATETIME = {
    "type": "string",
    "pattern": LOCAL_DATETIME_PATTERN,
    "description": "a local date or date-time in the schedule's time zone: 2026-12-31T18:00[:SS]",
}
_DAY_OF_MONTH = {
    "anyOf": [
        {"type": "integer", "minimum": 1, "maximum": 31},
        {"type": "integer", "minimum": -31, "maximum": -1},
        {"type": "string", "pattern": DAY_OF_MONTH_PATTERN},
    ],
    "description": "1..31, -1..-31 (from the end), first, last, 'second tuesday', 'last fri', ...",
}

SCHEDULE_SCHEMA: dict = {
    "title": "schedule",
    "description": (
        "When tasks run. Exactly one of: 'once' (a single local date-time), 'cron' (5-field cron "
        "expression) or 'every' (the repeat model). Times are wall-clock times in 'timezone'."
    ),
    "type": "object",
    "properties": {
        "description": {"type": "string"},
        "enabled": {"type": "boolean", "default": True},
        "timezone": {
            "type": "string",
            "minLength": 1,
            "description": "IANA time zone, e.g. Europe/Berlin",
        },
        "catch_up": {
            "enum": ["skip", "once", "all"],
            "default": "once",
            "description": "what to do with slots missed while the engine was down",
        },
        "max_lateness": durations.SCHEMA,
        "once": _LOCAL_DATETIME,
        "cron": {
            "type": "string",
            "minLength": 1,
            "description": "5-field cron: minute hour day-of-month month day-of-week",
        },
        "every": {
            "type": "string",
            "pattern": EVERY_PATTERN,
            "description": "minute, hour, day, week, month, year, or N of them: '15 minutes'",
        },
        "days": _one_or_many({"enum": sorted(WEEKDAYS, key=WEEKDAYS.__getitem__)}),
        "day_of_month": _one_or_many(_DAY_OF_MONTH),
        "months": _one_or_many(
            {"anyOf": [{"type": "integer", "minimum": 1, "maximum": 12}, {"enum": list(MONTHS)}]}
        ),
        "at": _one_or_many(_TIME),
        "between": {
            "type": "array",
            "prefixItems": [_TIME, _TIME],
            "minItems": 2,
            "maxItems": 2,
            "description": "daily window [from, until) for minute and hour repeats",
        },
        "start": _LOCAL_DATETIME,
        "end": {**_LOCAL_DATETIME, "description": "last possible fire time (inclusive), local"},
        "count": {"type": "integer", "minimum": 1, "maximum": 1_000_000},
    },
    "additionalProperties": False,
    "oneOf": [{"required": ["once"]}, {"required": ["cron"]}, {"required": ["every"]}],
    "dependentRequired": {
        key: ["every"] for key in ("days", "day_of_month", "months", "at", "between")
    },
}
