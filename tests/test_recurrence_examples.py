"""The reference product's schedule examples, the schema, and check_schedule's messages."""

from __future__ import annotations

from datetime import datetime, timezone

import jsonschema
import pytest
import yaml

from taskengine_core.recurrence import SCHEDULE_SCHEMA, check_schedule, compile_schedule

WEEKDAYS = ["mon", "tue", "wed", "thu", "fri"]


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)


def fires(spec: dict, after: str, count: int) -> list[str]:
    found = compile_schedule(spec).upcoming(utc(after), count)
    return [f.strftime("%Y-%m-%dT%H:%M") for f in found]


# ---------------------------------------------------------------- the reference product's examples


def test_every_saturday_at_17_in_chicago():
    spec = {"every": "week", "days": ["sat"], "at": "17:00", "timezone": "America/Chicago"}
    recurrence = compile_schedule(spec)
    assert recurrence.describe() == "every week on Sat at 17:00 (America/Chicago)"
    assert recurrence.timezone.key == "America/Chicago"
    # 17:00 CST is 23:00Z; after the 8 March change 17:00 CDT is 22:00Z
    assert fires(spec, "2026-03-01T00:00", 3) == [
        "2026-03-07T23:00", "2026-03-14T22:00", "2026-03-21T22:00"
    ]


def test_once_in_berlin_fires_once_then_never():
    recurrence = compile_schedule({"once": "2026-12-31T18:00", "timezone": "Europe/Berlin"})
    fire = utc("2026-12-31T17:00")  # 18:00 CET
    assert recurrence.next_after(utc("2026-06-01T00:00")) == fire
    assert recurrence.next_after(utc("2026-12-31T16:59:59")) == fire
    assert recurrence.next_after(fire) is None
    assert recurrence.upcoming(utc("2026-01-01T00:00"), 5) == [fire]
    assert recurrence.describe() == "once at 2026-12-31 18:00 (Europe/Berlin)"


def test_once_accepts_a_yaml_datetime_and_seconds():
    spec = yaml.safe_load("once: 2026-12-31 18:00:00\ntimezone: Europe/Berlin")
    assert isinstance(spec["once"], datetime)
    assert fires(spec, "2026-01-01T00:00", 2) == ["2026-12-31T17:00"]
    with_seconds = compile_schedule({"once": "2026-12-31T18:00:30"})
    assert with_seconds.next_after(utc("2026-12-31T18:00")) == utc("2026-12-31T18:00:30")


def test_every_7_days_on_friday_at_18_fires_every_friday():
    spec = {"every": "7 days", "days": ["fri"], "at": "18:00"}
    assert fires(spec, "2026-03-01T00:00", 3) == [
        "2026-03-06T18:00", "2026-03-13T18:00", "2026-03-20T18:00"
    ]


@pytest.mark.parametrize("first", [1, "first"])
def test_first_day_of_each_month(first):
    spec = {"every": "month", "day_of_month": first, "at": "06:00"}
    assert fires(spec, "2026-01-15T00:00", 3) == [
        "2026-02-01T06:00", "2026-03-01T06:00", "2026-04-01T06:00"
    ]


def test_every_15_minutes_between_8_and_18_on_weekdays():
    spec = {
        "every": "15 minutes",
        "between": ["08:00", "18:00"],
        "days": WEEKDAYS,
        "timezone": "Europe/Berlin",
    }
    # Friday 17:40 CET: 17:45 is the last of the day (18:00 is excluded), then Monday 08:00
    assert fires(spec, "2026-03-06T16:40", 4) == [
        "2026-03-06T16:45", "2026-03-09T07:00", "2026-03-09T07:15", "2026-03-09T07:30"
    ]
    assert compile_schedule(spec).describe() == (
        "every 15 minutes on weekdays between 08:00 and 18:00 (Europe/Berlin)"
    )
    assert len(compile_schedule(spec).upcoming(utc("2026-03-09T00:00"), 100)) == 100
    monday = compile_schedule(spec).upcoming(utc("2026-03-09T00:00"), 41)
    assert monday[-1] == utc("2026-03-10T07:00")  # 40 fires on Monday, the 41st on Tuesday


def test_second_tuesday_of_the_month_at_9():
    spec = {"every": "month", "day_of_month": "second tuesday", "at": "09:00"}
    assert fires(spec, "2026-03-01T00:00", 3) == [
        "2026-03-10T09:00", "2026-04-14T09:00", "2026-05-12T09:00"
    ]
    assert compile_schedule(spec).describe() == "every month on the second Tue at 09:00 (UTC)"


def test_last_friday():
    spec = {"every": "month", "day_of_month": "last friday"}
    assert fires(spec, "2026-03-01T00:00", 3) == [
        "2026-03-27T00:00", "2026-04-24T00:00", "2026-05-29T00:00"
    ]


def test_count_limits_the_occurrences():
    spec = {"every": "day", "at": "09:00", "start": "2026-03-01", "count": 3}
    recurrence = compile_schedule(spec)
    assert fires(spec, "2026-01-01T00:00", 5) == [
        "2026-03-01T09:00", "2026-03-02T09:00", "2026-03-03T09:00"
    ]
    assert recurrence.next_after(utc("2026-03-03T09:00")) is None


def test_count_for_minutes_counts_from_start():
    spec = {"every": "15 minutes", "start": "2026-03-05T10:05", "count": 3}
    assert fires(spec, "2026-01-01T00:00", 4) == [
        "2026-03-05T10:05", "2026-03-05T10:20", "2026-03-05T10:35"
    ]


def test_end_is_inclusive_and_then_none():
    spec = {"every": "week", "days": ["mon"], "at": "08:00"}
    spec.update(start="2026-03-01", end="2026-03-16T08:00")
    assert fires(spec, "2026-01-01T00:00", 5) == [
        "2026-03-02T08:00", "2026-03-09T08:00", "2026-03-16T08:00"
    ]
    assert compile_schedule(spec).next_after(utc("2026-03-16T08:00")) is None


def test_start_sets_the_default_time_and_the_interval_anchor():
    spec = {"every": "2 days", "start": "2026-03-05T10:30"}
    assert fires(spec, "2026-03-01T00:00", 3) == [
        "2026-03-05T10:30", "2026-03-07T10:30", "2026-03-09T10:30"
    ]


def test_intervals_without_start_count_from_monday_2000_01_03():
    # 2026-03-09 is 1366 weeks after 2000-01-03: an even week
    spec = {"every": "2 weeks", "days": ["wed"], "at": "12:00"}
    assert fires(spec, "2026-03-01T00:00", 3) == [
        "2026-03-11T12:00", "2026-03-25T12:00", "2026-04-08T12:00"
    ]


def test_window_past_midnight_belongs_to_the_day_it_opens():
    spec = {"every": "hour", "between": ["22:00", "02:00"], "days": ["fri"]}
    spec["timezone"] = "Europe/Berlin"
    # Friday 5 June 2026 22:00 CEST = 20:00Z ... Saturday 01:00 CEST = 23:00Z
    assert fires(spec, "2026-06-01T00:00", 5) == [
        "2026-06-05T20:00",
        "2026-06-05T21:00",
        "2026-06-05T22:00",
        "2026-06-05T23:00",
        "2026-06-12T20:00",
    ]


def test_day_of_month_lists_are_a_union():
    spec = {"every": "month", "day_of_month": [1, "last friday", -1]}
    assert fires(spec, "2026-03-01T00:00", 5) == [
        "2026-03-27T00:00",
        "2026-03-31T00:00",
        "2026-04-01T00:00",
        "2026-04-24T00:00",
        "2026-04-30T00:00",
    ]


def test_days_with_a_day_of_month_means_both_friday_the_13th():
    spec = {"every": "month", "day_of_month": 13, "days": ["fri"]}
    assert fires(spec, "2026-01-01T00:00", 3) == [
        "2026-02-13T00:00", "2026-03-13T00:00", "2026-11-13T00:00"
    ]


def test_an_impossible_day_next_to_a_weekday_does_not_stall():
    # "31 feb" can never match; OR-ed with Mondays (cron) or with "last friday" the rest fires.
    assert fires({"cron": "0 0 31 feb mon"}, "2026-01-01T00:00", 2) == [
        "2026-02-02T00:00", "2026-02-09T00:00"
    ]
    spec = {"every": "month", "months": ["feb"], "day_of_month": [30, "last friday"]}
    assert check_schedule(spec) == []
    assert fires(spec, "2026-01-01T00:00", 2) == ["2026-02-27T00:00", "2027-02-26T00:00"]


def test_february_29_fires_in_leap_years_only():
    spec = {"every": "year", "months": ["feb"], "day_of_month": 29, "at": "12:00"}
    assert fires(spec, "2026-01-01T00:00", 2) == ["2028-02-29T12:00", "2032-02-29T12:00"]


def test_cron_with_names_in_kathmandu():
    spec = {"cron": "0 9 * JAN-MAR MON-FRI", "timezone": "Asia/Kathmandu"}  # +05:45
    assert fires(spec, "2026-03-30T12:00", 3) == [
        "2026-03-31T03:15", "2027-01-01T03:15", "2027-01-04T03:15"
    ]
    assert fires({"cron": "@daily"}, "2026-01-01T00:00", 1) == ["2026-01-02T00:00"]


def test_default_timezone_comes_from_the_caller():
    recurrence = compile_schedule({"every": "day", "at": "09:00"}, default_timezone="Europe/Berlin")
    assert recurrence.timezone.key == "Europe/Berlin"
    assert fires({"every": "day", "at": "09:00", "timezone": "UTC"}, "2026-01-01T00:00", 1) == [
        "2026-01-01T09:00"
    ]


def test_policy_fields_are_carried_on_the_recurrence():
    spec = {"cron": "0 2 * * *", "catch_up": "all", "max_lateness": "1h", "enabled": False}
    recurrence = compile_schedule(spec)
    assert (recurrence.catch_up, recurrence.max_lateness) == ("all", 3600.0)
    assert recurrence.enabled is False
    assert compile_schedule({"cron": "0 2 * * *"}).catch_up == "once"


def test_next_after_wants_an_aware_datetime():
    with pytest.raises(ValueError, match="timezone-aware"):
        compile_schedule({"every": "day"}).next_after(datetime(2026, 1, 1))


# ---------------------------------------------------------------- check_schedule messages


@pytest.mark.parametrize(
    "spec, expected",
    [
        pytest.param(
            {"every": "day", "start": "2026-02-01T00:00", "end": "2026-01-01T00:00"},
            (
                "end",
                "end 2026-01-01T00:00 is before start 2026-02-01T00:00: "
                "this schedule can never fire",
            ),
            id="end-before-start",
        ),
        pytest.param(
            {"every": "year", "months": ["feb"], "day_of_month": 30},
            ("day_of_month", "day 30 of February never occurs: this schedule can never fire"),
            id="february-30",
        ),
        pytest.param(
            {"cron": "61 * * * *"},
            ("cron", "bad cron expression '61 * * * *': minute must be 0-59"),
            id="bad-cron",
        ),
        pytest.param(
            {"cron": "0 0 30 2 *"},
            (
                "cron",
                "cron expression '0 0 30 2 *': day 30 of February never occurs: "
                "this schedule can never fire",
            ),
            id="cron-february-30",
        ),
        pytest.param(
            {"cron": "0 0 * * * *"},
            (
                "cron",
                "bad cron expression '0 0 * * * *': "
                "expected 5 fields (minute hour day-of-month month day-of-week), found 6",
            ),
            id="cron-with-seconds",
        ),
        pytest.param(
            {"every": "day", "timezone": "Mars/Base"},
            ("timezone", "unknown time zone 'Mars/Base'"),
            id="unknown-zone",
        ),
        pytest.param(
            {"every": "15 minutes", "at": "10:00"},
            ("at", "'at' does not apply to every 15 minutes: use 'between' to limit the hours"),
            id="at-with-minutes",
        ),
        pytest.param(
            {"every": "day", "between": ["08:00", "18:00"]},
            (
                "between",
                "'between' only applies to minute and hour repeats: "
                "use 'at' for every day",
            ),
            id="between-with-days",
        ),
        pytest.param(
            {"every": "day", "count": 3},
            ("count", "'count' needs a 'start': occurrences are counted from it"),
            id="count-without-start",
        ),
        pytest.param(
            {"every": "week", "day_of_month": 1},
            ("day_of_month", "'day_of_month' needs every: month or every: year, not every week"),
            id="day-of-month-weekly",
        ),
        pytest.param(
            {"once": "2026-02-30T10:00"},
            ("once", "invalid date-time '2026-02-30T10:00': day is out of range for month"),
            id="once-invalid-date",
        ),
        pytest.param(
            {"every": "4 years", "months": ["feb"], "day_of_month": 29, "start": "2001-01-01"},
            ("every", "no date ever matches: this schedule can never fire"),
            id="february-29-never-on-the-lattice",
        ),
        pytest.param(
            {"every": "day", "at": "09:00", "start": "2026-03-05T10:00", "end": "2026-03-05T12:00"},
            (
                "end",
                "no fire time from start 2026-03-05T10:00 until end "
                "2026-03-05T12:00: this schedule can never fire",
            ),
            id="empty-start-end-span",
        ),
    ],
)
def test_check_schedule_messages(spec, expected):
    assert check_schedule(spec) == [expected]
    if expected[0] not in ("every",) and "no fire time" not in expected[1]:
        with pytest.raises(ValueError) as raised:
            compile_schedule(spec)
        assert f"{expected[0]}: {expected[1]}" in str(raised.value)


def test_check_schedule_accepts_good_schedules():
    for spec in (
        {"every": "week", "days": ["sat"], "at": "17:00", "timezone": "America/Chicago"},
        {"once": "2020-01-01T00:00"},  # in the past: it has fired, that is not an error
        {"cron": "0 0 29 2 *"},
        {"every": "hour", "between": ["22:00", "06:00"]},
    ):
        assert check_schedule(spec) == [], spec


# ---------------------------------------------------------------- the JSON Schema


def schema_errors(instance: dict) -> list[str]:
    validator = jsonschema.Draft202012Validator(SCHEDULE_SCHEMA)
    return [e.message for e in validator.iter_errors(instance)]


def test_schema_is_valid_draft_2020_12_and_accepts_every_form():
    jsonschema.Draft202012Validator.check_schema(SCHEDULE_SCHEMA)
    for spec in (
        {"every": "week", "days": ["sat"], "at": "17:00", "timezone": "America/Chicago"},
        {"every": "day", "catch_up": "skip", "enabled": True},
        {"once": "2026-12-31T18:00", "max_lateness": "1h"},
        {"cron": "0 2 * * *", "max_lateness": 600, "description": "nightly", "enabled": False},
        {"every": "15 minutes", "between": ["08:00", "18:00"], "days": WEEKDAYS},
        {"every": "month", "day_of_month": ["first monday", -1, "last"], "months": [1, "jul"]},
        {"every": "day", "start": "2026-01-01", "end": "2026-12-31T23:59:59", "at": "17:30:15"},
    ):
        assert schema_errors(spec) == [], spec


@pytest.mark.parametrize(
    "spec",
    [
        {"once": "2026-12-31T18:00", "cron": "0 2 * * *"},  # two forms
        {"at": "17:00"},  # no form
        {"cron": "0 2 * * *", "at": "17:00"},  # repeat key without every
        {"every": "fortnight"},
        {"every": "0 days"},
        {"every": "day", "day_of_month": 0},
        {"every": "day", "at": "25:00"},
        {"every": "day", "catch_up": "sometimes"},
        {"every": "day", "max_lateness": "soon"},
        {"every": "day", "interval": 2},  # one spelling: "2 days"
        {"every": "day", "count": 0},
    ],
)
def test_schema_rejects(spec):
    assert schema_errors(spec)
