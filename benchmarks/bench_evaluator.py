"""Events per second through the event-rule index, against a naive loop and a bare dict lookup.

10,000 rules on 1,000 event types (``type-0`` .. ``type-999``), each rule with one equality
condition (``data.user: user-<k>``); a stream of events of which about 1% match a rule.

    python benchmarks/bench_evaluator.py [--rules 10000] [--types 1000] [--events 200000]

Each figure is the median of 5 runs. The index and the naive loop are checked to agree first.

Then unique event types (``job.<n>.done``, each seen once, as a burst of job events brings):
the engine asks ``Runtime.listens`` and ``RuleIndex.match`` for each. Baseline in the same run:
the former ``listens``, ``fnmatch`` over every rule's pattern per new type.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import sys
import time

from taskengine_core.conditions import compile_conditions
from taskengine_core.rule_index import Rule, RuleIndex

USERS = 1000  # users per event; each type has rules for rules/types of them -> ~1% match


def build(rule_count: int, type_count: int, event_count: int, seed: int = 1):
    rules = [
        Rule(
            name=f"rule-{i:05d}",
            on=[f"type-{i % type_count}"],
            condition=compile_conditions({"data.user": f"user-{i // type_count}"}),
        )
        for i in range(rule_count)
    ]
    rng = random.Random(seed)
    events = [
        {
            "id": str(n),
            "type": f"type-{rng.randrange(type_count)}",
            "source": "bench",
            "time": "2026-11-25T10:00:00Z",
            "data": {"user": f"user-{rng.randrange(USERS)}", "n": n},
        }
        for n in range(event_count)
    ]
    return rules, events


def naive(rules: list[Rule]):
    """Test every rule's type and condition against every event."""
    checks = [(rule, frozenset(rule.on), rule.condition.matches) for rule in rules]

    def match(event: dict) -> list[Rule]:
        event_type = event["type"]
        return [rule for rule, types, ok in checks if event_type in types and ok(event)]

    return match


def dict_lookup(rules: list[Rule]):
    """The ceiling: one dict lookup by type and nothing else."""
    by_type: dict[str, list[Rule]] = {}
    for rule in rules:
        by_type.setdefault(rule.on[0], []).append(rule)

    def match(event: dict) -> list[Rule]:
        return by_type.get(event["type"], ())

    return match


def unique_type_events(count: int, start: int = 0) -> list[dict]:
    return [{"id": str(n), "type": f"job.{n}.done", "source": "bench", "time": "2026-11-25T10:00:00Z",
             "data": {"user": "user-1"}} for n in range(start, start + count)]


def fnmatch_listens(rules: list[Rule]):
    """The former ``Runtime.listens``: every rule's pattern tested per new type, cached unbounded."""
    from fnmatch import fnmatchcase

    cache: dict[str, bool] = {}

    def listens(event_type: str) -> bool:
        found = cache.get(event_type)
        if found is None:
            found = cache[event_type] = any(fnmatchcase(event_type, p) for r in rules for p in r.on)
        return found

    return listens


def rate(match, events: list[dict], runs: int = 5) -> float:
    results = []
    for _ in range(runs):
        start = time.perf_counter()
        for event in events:
            match(event)
        results.append(len(events) / (time.perf_counter() - start))
    return statistics.median(results)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rules", type=int, default=10_000)
    parser.add_argument("--types", type=int, default=1_000)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--naive-events", type=int, default=2_000, help="the naive loop is slow")
    args = parser.parse_args(argv)

    rules, events = build(args.rules, args.types, args.events)
    index = RuleIndex(rules)
    slow = naive(rules)
    sample = events[: args.naive_events]
    assert all(index.match(e) == slow(e) for e in sample), "index and naive loop disagree"
    hits = sum(1 for e in events if index.match(e))

    print(f"python {platform.python_version()} on {platform.machine()}, cpu_count={os.cpu_count()}")
    print(f"{args.rules} rules, {args.types} types, {len(events)} events, "
          f"{hits / len(events):.2%} match a rule; median of 5 runs")
    indexed = rate(index.match, events)
    looped = rate(slow, sample)
    ceiling = rate(dict_lookup(rules), events)
    print(f"(a) RuleIndex.match   {indexed:>12,.0f} events/s")
    print(f"(b) naive loop        {looped:>12,.0f} events/s   "
          f"index is {indexed / looped:,.0f}x faster")
    print(f"(c) dict by type      {ceiling:>12,.0f} events/s   "
          f"index reaches {indexed / ceiling:.0%} of it")
    # unique types: what the engine does per event (listens, then match), all caches cold
    glob_rules = rules + [Rule(name="any-job-failed", on=["job.*.failed"],
                               condition=compile_conditions(None))]
    fresh = iter(range(10**9))

    def through_index(event: dict):
        index = through_index.index
        if index.listens(event["type"]):
            index.match(event)

    def unique_rate(make_listens, count: int) -> float:
        results = []
        for _ in range(5):
            listens_fn = make_listens()
            batch = unique_type_events(count, next(fresh) * count)
            start = time.perf_counter()
            for event in batch:
                listens_fn(event)
            results.append(count / (time.perf_counter() - start))
        return statistics.median(results)

    def new_index():
        through_index.index = RuleIndex(glob_rules)
        return through_index

    def new_fnmatch():
        listens_fn = fnmatch_listens(glob_rules)
        return lambda event: listens_fn(event["type"])

    unique = unique_rate(new_index, 100_000)
    unique_old = unique_rate(new_fnmatch, 200)
    print(f"unique event types (job.<n>.done), {len(glob_rules)} rules incl. one glob job.*.failed:")
    print(f"(d) listens + match    {unique:>12,.0f} events/s")
    print(f"(e) fnmatch per rule   {unique_old:>12,.0f} events/s   (former Runtime.listens; "
          f"index is {unique / unique_old:,.0f}x faster)")
    ok = indexed >= 500_000 and indexed >= 100 * looped and unique >= 20_000
    print("target (>= 500,000 events/s and >= 100x naive; unique types >= 20,000/s, above what the ingress takes in):", "met" if ok else "MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
