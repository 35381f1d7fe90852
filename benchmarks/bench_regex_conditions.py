"""regex conditions: RE2 (what the evaluator uses) against Python's re, on ordinary and hostile
events.

Usage: python benchmarks/bench_regex_conditions.py [--runs 5] [--events 100000]

Baseline measured in the same run: Python's ``re.search`` with the same pattern on the same
text. The hostile case is ``^(a+)+$`` on "a" * N + "!": Python's re is timed at N = 20
(each extra character doubles it; 27 took 10 s in the issue), RE2 at N = 20 and at 100,000.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import time


def per_call(func, count: int) -> float:
    start = time.perf_counter()
    for _ in range(count):
        func()
    return (time.perf_counter() - start) / count


def median_of(runs: int, func, count: int) -> float:
    return statistics.median(per_call(func, count) for _ in range(runs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--events", type=int, default=100_000)
    args = parser.parse_args()

    from taskengine_core.conditions import compile_conditions

    print(f"cpu_count={os.cpu_count()} runs={args.runs}")
    ordinary = compile_conditions({"data.host": {"regex": "^db-[0-9]+$"}})
    event = {"type": "x", "data": {"host": "db-12345"}}
    pattern = re.compile("^db-[0-9]+$")
    base = median_of(args.runs, lambda: pattern.search("db-12345") is not None, args.events)
    ours = median_of(args.runs, lambda: ordinary.matches(event), args.events)
    print(f"  ordinary pattern, Python re.search (baseline): {base * 1e9:8.0f} ns/event")
    print(f"  ordinary pattern, condition with RE2:          {ours * 1e9:8.0f} ns/event "
          f"({ours / base:.1f}x)")

    hostile = compile_conditions({"data.name": {"regex": "^(a+)+$"}})
    evil = re.compile("^(a+)+$")
    text = "a" * 20 + "!"
    base = median_of(args.runs, lambda: evil.search(text), 1)
    ours = median_of(args.runs, lambda: hostile.matches({"data": {"name": text}}), 100)
    print(f"  ^(a+)+$ on 20 a's + '!', Python re (baseline): {base * 1e3:8.1f} ms")
    print(f"  ^(a+)+$ on 20 a's + '!', condition with RE2:   {ours * 1e3:8.4f} ms "
          f"({base / ours:,.0f}x faster)")
    long_text = {"data": {"name": "a" * 100_000 + "!"}}
    ours = median_of(args.runs, lambda: hostile.matches(long_text), 10)
    print(f"  ^(a+)+$ on 100,000 a's + '!', RE2:             {ours * 1e3:8.2f} ms "
          "(Python re: never finishes)")


if __name__ == "__main__":
    main()
