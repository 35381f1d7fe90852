"""Microseconds per ``Recurrence.next_after`` call, next to dateutil's ``rrule.after``.

    python benchmarks/bench_recurrence.py [--calls 2000] [--runs 5]

For each schedule kind: "walk" is what the scheduler does (each call asks for the fire after
the previous fire), "random" asks about unrelated instants in 1990-2060 (no look-ahead cache
hits). The baseline is a plain naive ``dateutil.rrule`` for the same pattern (cache=True,
dtstart 2026-01-01, no time zone), walked the same way with ``rrule.after``. Each figure is the
median of ``--runs`` runs.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import sys
import time
from datetime import datetime, timedelta, timezone

from dateutil.rrule import DAILY, FR, MINUTELY, MO, MONTHLY, SA, TH, TU, WE, WEEKLY, rrule

from taskengine_core.recurrence import compile_schedule

UTC = timezone.utc
BERLIN = "Europe/Berlin"
BEGIN = datetime(2026, 1, 1)
WEEKDAYS = ["mon", "tue", "wed", "thu", "fri"]
CASES = [  # (name, schedule, the equivalent plain rrule)
    (
        "daily 02:30",
        {"every": "day", "at": "02:30"},
        dict(freq=DAILY, byhour=2, byminute=30, bysecond=0),
    ),
    (
        "weekly Sat 17:00",
        {"every": "week", "days": ["sat"], "at": "17:00"},
        dict(freq=WEEKLY, byweekday=SA, byhour=17, byminute=0, bysecond=0),
    ),
    (
        "monthly 2nd Tue 09:00",
        {"every": "month", "day_of_month": "second tuesday", "at": "09:00"},
        dict(freq=MONTHLY, byweekday=TU(2), byhour=9, byminute=0, bysecond=0),
    ),
    (
        "cron 0 2 * * *",
        {"cron": "0 2 * * *"},
        dict(freq=DAILY, byhour=2, byminute=0, bysecond=0),
    ),
    (
        "15 min 08-18 weekdays",
        {"every": "15 minutes", "between": ["08:00", "18:00"], "days": WEEKDAYS},
        dict(freq=MINUTELY, interval=15, byhour=range(8, 18), byweekday=(MO, TU, WE, TH, FR)),
    ),
]


def per_call_us(fn, calls: int, runs: int) -> float:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        fn(calls)
        samples.append((time.perf_counter() - started) / calls * 1e6)
    return statistics.median(samples)


def walk(spec: dict):
    def run(calls: int):
        recurrence = compile_schedule({**spec, "timezone": BERLIN})  # fresh: no warm cache
        t = BEGIN.replace(tzinfo=UTC)
        for _ in range(calls):
            t = recurrence.next_after(t)

    return run


def scattered(spec: dict, seed: int = 7):
    recurrence = compile_schedule({**spec, "timezone": BERLIN})
    rng = random.Random(seed)
    first, span = datetime(1990, 1, 1, tzinfo=UTC), int(70 * 365.25 * 86400)

    def run(calls: int):
        instants = [first + timedelta(seconds=rng.randrange(span)) for _ in range(calls)]
        for t in instants:
            recurrence.next_after(t)

    return run


def baseline(kwargs: dict):
    def run(calls: int):
        rule = rrule(dtstart=BEGIN, cache=True, **kwargs)
        t = BEGIN
        for _ in range(calls):
            t = rule.after(t)

    return run


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    machine = f"{platform.machine()} {platform.system()}"
    print(f"python {sys.version.split()[0]} on {machine}, os.cpu_count()={os.cpu_count()}")
    print(f"median of {args.runs} runs of {args.calls} calls; µs per call; schedules in {BERLIN}")
    print(f"{'schedule':<24}{'walk':>10}{'random':>10}{'rrule.after':>13}")
    for name, spec, kwargs in CASES:
        ours = per_call_us(walk(spec), args.calls, args.runs)
        cold = per_call_us(scattered(spec), max(args.calls // 4, 1), args.runs)
        base = per_call_us(baseline(kwargs), args.calls, args.runs)
        print(f"{name:<24}{ours:>10.1f}{cold:>10.1f}{base:>13.1f}")


if __name__ == "__main__":
    main()
