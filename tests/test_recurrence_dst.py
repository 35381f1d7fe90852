"""RELIABILITY #7 as tables: spring forward and fall back in New York and Berlin (2026), plus
the 30-minute shift of Lord Howe and the day Samoa skipped.

2026 transitions: New York 8 March 02:00 EST → 03:00 EDT (07:00Z), 1 November 02:00 EDT →
01:00 EST (06:00Z); Berlin 29 March 02:00 CET → 03:00 CEST (01:00Z), 25 October 03:00 CEST →
02:00 CET (01:00Z). Expected values are UTC; the comments give the local wall time.
"""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from taskengine_core.recurrence import compile_schedule

NY = {"timezone": "America/New_York"}
BERLIN = {"timezone": "Europe/Berlin"}


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)


def fires(spec: dict, after: str, count: int) -> list[str]:
    found = compile_schedule(spec).upcoming(utc(after), count)
    return [f.strftime("%Y-%m-%dT%H:%M") for f in found]


WALL_CLOCK = [
    pytest.param(
        {**NY, "every": "day", "at": "02:30"}, "2026-03-06T12:00",
        ["2026-03-07T07:30",  # 02:30 EST
         "2026-03-08T07:00",  # 02:30 does not exist: 03:00 EDT, right after the gap
         "2026-03-09T06:30"],  # 02:30 EDT
        id="new-york-daily-02:30-spring-forward",
    ),
    pytest.param(
        {**NY, "cron": "30 2 * * *"}, "2026-03-06T12:00",
        ["2026-03-07T07:30", "2026-03-08T07:00", "2026-03-09T06:30"],
        id="new-york-cron-30-2-spring-forward",
    ),
    pytest.param(
        {**NY, "every": "day", "at": "01:30"}, "2026-10-30T12:00",
        ["2026-10-31T05:30",  # 01:30 EDT
         "2026-11-01T05:30",  # 01:30 EDT, the first of the two 01:30s; 06:30Z (EST) does not fire
         "2026-11-02T06:30"],  # 01:30 EST
        id="new-york-daily-01:30-fall-back",
    ),
    pytest.param(
        {**NY, "cron": "30 1 * * *"}, "2026-10-30T12:00",
        ["2026-10-31T05:30", "2026-11-01T05:30", "2026-11-02T06:30"],
        id="new-york-cron-30-1-fall-back",
    ),
    pytest.param(
        {**NY, "every": "day", "at": "02:30"}, "2026-10-30T12:00",
        ["2026-10-31T06:30", "2026-11-01T07:30", "2026-11-02T07:30"],  # 02:30 is not repeated in NY
        id="new-york-daily-02:30-fall-back",
    ),
    pytest.param(
        {**BERLIN, "every": "day", "at": "02:30"}, "2026-03-27T12:00",
        ["2026-03-28T01:30",  # 02:30 CET
         "2026-03-29T01:00",  # no 02:30: 03:00 CEST
         "2026-03-30T00:30"],  # 02:30 CEST
        id="berlin-daily-02:30-spring-forward",
    ),
    pytest.param(
        {**BERLIN, "cron": "30 2 * * *"}, "2026-03-27T12:00",
        ["2026-03-28T01:30", "2026-03-29T01:00", "2026-03-30T00:30"],
        id="berlin-cron-30-2-spring-forward",
    ),
    pytest.param(
        {**BERLIN, "every": "day", "at": "02:30"}, "2026-10-23T12:00",
        ["2026-10-24T00:30",  # 02:30 CEST
         "2026-10-25T00:30",  # first 02:30 (CEST); not again at 01:30Z (CET)
         "2026-10-26T01:30"],  # 02:30 CET
        id="berlin-daily-02:30-fall-back",
    ),
    pytest.param(
        {**BERLIN, "cron": "30 2 * * *"}, "2026-10-23T12:00",
        ["2026-10-24T00:30", "2026-10-25T00:30", "2026-10-26T01:30"],
        id="berlin-cron-30-2-fall-back",
    ),
    pytest.param(
        {**NY, "cron": "30 * * * *"}, "2026-03-08T05:00",
        ["2026-03-08T05:30",  # 00:30 EST
         "2026-03-08T06:30",  # 01:30 EST
         "2026-03-08T07:00",  # 02:30 does not exist: 03:00 EDT
         "2026-03-08T07:30"],  # 03:30 EDT
        id="new-york-hourly-cron-spring-forward",
    ),
    pytest.param(
        {**NY, "cron": "30 * * * *"}, "2026-11-01T03:00",
        ["2026-11-01T03:30",  # 23:30 EDT
         "2026-11-01T04:30",  # 00:30 EDT
         "2026-11-01T05:30",  # 01:30 EDT; 01:30 EST (06:30Z) is the same wall time: skipped
         "2026-11-01T07:30"],  # 02:30 EST
        id="new-york-hourly-cron-fall-back",
    ),
    pytest.param(
        {**NY, "every": "day", "at": ["02:00", "02:30", "03:00"]}, "2026-03-07T12:00",
        ["2026-03-08T07:00",  # three wall times, one instant (03:00 EDT): fires once
         "2026-03-09T06:00", "2026-03-09T06:30"],
        id="new-york-three-times-in-the-gap-fire-once",
    ),
    pytest.param(
        {"timezone": "Australia/Lord_Howe", "every": "day", "at": "02:15"}, "2026-10-02T12:00",
        ["2026-10-02T15:45",  # 02:15 +10:30
         "2026-10-03T15:30",  # 02:00 → 02:30: 02:15 fires at 02:30 +11
         "2026-10-04T15:15"],  # 02:15 +11
        id="lord-howe-30-minute-gap",
    ),
    pytest.param(
        {"timezone": "Pacific/Apia", "every": "day", "at": "09:00"}, "2011-12-29T00:00",
        ["2011-12-29T19:00",  # 29 Dec 09:00 -10
         "2011-12-30T10:00",  # 30 Dec never happened: 31 Dec 00:00 +14, right after the gap
         "2011-12-30T19:00"],  # 31 Dec 09:00 +14
        id="apia-skipped-day",
    ),
]


@pytest.mark.parametrize("spec, after, expected", WALL_CLOCK)
def test_wall_clock_schedules_across_transitions(spec, after, expected):
    assert fires(spec, after, len(expected)) == expected


ELAPSED = [
    pytest.param(
        {**NY, "every": "hour"}, "2026-03-08T05:00",
        ["2026-03-08T06:00", "2026-03-08T07:00", "2026-03-08T08:00", "2026-03-08T09:00"],
        id="new-york-spring-forward",  # 01:00 EST, 03:00 EDT, 04:00 EDT, 05:00 EDT
    ),
    pytest.param(
        {**NY, "every": "hour"}, "2026-11-01T03:30",
        ["2026-11-01T04:00", "2026-11-01T05:00", "2026-11-01T06:00", "2026-11-01T07:00"],
        id="new-york-fall-back",  # 00:00 EDT, 01:00 EDT, 01:00 EST, 02:00 EST
    ),
    pytest.param(
        {**BERLIN, "every": "hour"}, "2026-03-28T23:30",
        ["2026-03-29T00:00", "2026-03-29T01:00", "2026-03-29T02:00"],
        id="berlin-spring-forward",  # 01:00 CET, 03:00 CEST, 04:00 CEST
    ),
    pytest.param(
        {**BERLIN, "every": "hour"}, "2026-10-24T23:30",
        ["2026-10-25T00:00", "2026-10-25T01:00", "2026-10-25T02:00"],
        id="berlin-fall-back",  # 02:00 CEST, 02:00 CET, 03:00 CET
    ),
    pytest.param(
        {**NY, "every": "hour", "between": ["00:00", "06:00"]}, "2026-11-01T00:00",
        ["2026-11-01T04:00", "2026-11-01T05:00", "2026-11-01T06:00", "2026-11-01T07:00",
         "2026-11-01T08:00", "2026-11-01T09:00", "2026-11-01T10:00", "2026-11-02T05:00"],
        id="new-york-window-fall-back-has-seven-hours",
    ),
    pytest.param(
        {**NY, "every": "hour", "between": ["00:00", "06:00"]}, "2026-03-08T00:00",
        ["2026-03-08T05:00", "2026-03-08T06:00", "2026-03-08T07:00", "2026-03-08T08:00",
         "2026-03-08T09:00", "2026-03-09T04:00"],
        id="new-york-window-spring-forward-has-five-hours",
    ),
]


@pytest.mark.parametrize("spec, after, expected", ELAPSED)
def test_hourly_intervals_follow_elapsed_time(spec, after, expected):
    assert fires(spec, after, len(expected)) == expected


def test_asking_from_inside_the_repeated_hour_does_not_fire_its_slots_again():
    # 06:10Z is 01:10 EST, the second pass through 01:xx: 01:15/01:30/01:45 fired in the first.
    assert fires({**NY, "cron": "*/15 * * * *"}, "2026-11-01T06:10", 2) == [
        "2026-11-01T07:00", "2026-11-01T07:15"
    ]
    assert fires({**NY, "every": "day", "at": "01:30"}, "2026-11-01T06:45", 1) == [
        "2026-11-02T06:30"
    ]


def test_once_in_the_gap_and_in_the_repeat():
    assert fires({**NY, "once": "2026-03-08T02:30"}, "2026-03-01T00:00", 2) == ["2026-03-08T07:00"]
    assert fires({**NY, "once": "2026-11-01T01:30"}, "2026-11-01T00:00", 2) == ["2026-11-01T05:30"]
    assert fires({**NY, "once": "2026-11-01T01:30"}, "2026-11-01T05:30", 1) == []
