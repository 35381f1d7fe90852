"""Which event rules an event triggers, at a cost that does not grow with the number of rules.

Rules are grouped by event type: exact types in a dict, globs (``sync.*``, ``*``) grouped by their
literal prefix (the text before the first wildcard), so that a new event type is tested only
against the globs whose prefix it starts with: one dict lookup per prefix length, not a test per
rule. The result is kept in a bounded cache, as is whether anything listens to a type at all. Within a type, rules are indexed by one equality
condition (the path most of them test, e.g. ``data.user``): one dict lookup finds the few
candidates, and only their remaining conditions are evaluated.
"""

from __future__ import annotations

import fnmatch
import re
import threading
from collections import Counter
from dataclasses import dataclass
from operator import attrgetter
from typing import Any, Callable, Iterable

from .conditions import MISSING, Condition, path_getter

CACHE_SIZE = 4096  # distinct event types whose glob matches (and listeners) are remembered
_GLOB_CHARS = re.compile(r"[*?\[]")
_by_name = attrgetter("name")


@dataclass(eq=False)  # identity equality: rules can be set members and dict keys
class Rule:
    """One event rule: the event types it listens to (exact or glob) and its conditions."""

    name: str
    on: list[str]
    condition: Condition
    payload: object = None  # opaque to the index: tasks, delay, throttle, ...

    def __post_init__(self) -> None:
        if isinstance(self.on, str):
            self.on = [self.on]
        if not self.on or not all(isinstance(p, str) and p for p in self.on):
            raise ValueError(
                f"event rule {self.name!r}: 'on' must be an event type or a list of them, "
                f"got {self.on!r}"
            )


def is_glob(pattern: str) -> bool:
    return _GLOB_CHARS.search(pattern) is not None


def literal_prefix(pattern: str) -> str:
    """The text of a glob before its first wildcard (all of it for an exact type)."""
    found = _GLOB_CHARS.search(pattern)
    return pattern[:found.start()] if found else pattern


def _type_test(pattern: str) -> Callable[[str], bool]:
    if pattern == "*":
        return lambda event_type: True
    if is_glob(pattern):
        match = re.compile(fnmatch.translate(pattern)).match
        return lambda event_type: match(event_type) is not None
    return pattern.__eq__


class _Bucket:
    """The rules of one event type, indexed by one equality path."""

    __slots__ = ("get", "by_value", "by_bool", "residual")

    def __init__(self, rules: list[Rule]):  # rules sorted by name
        counts = Counter(path for rule in rules for path in rule.condition.equalities)
        path = min(counts, key=lambda p: (-counts[p], p)) if counts else None
        self.get = path_getter(path) if path else None
        # True == 1 in a dict, but not for conditions: booleans get their own table
        self.by_value: dict[Any, list] = {}
        self.by_bool: dict[bool, list] = {}
        self.residual: list[tuple[Rule, Callable | None]] = []
        for rule in rules:
            if path in rule.condition.equalities:
                value = rule.condition.equalities[path]
                table = self.by_bool if isinstance(value, bool) else self.by_value
                table.setdefault(value, []).append((rule, rule.condition.without(path).tester()))
            else:
                self.residual.append((rule, rule.condition.tester()))

    def match(self, event: dict) -> list[Rule]:
        found = []
        if self.get is not None:
            value = self.get(event)
            try:
                hits = (self.by_bool if value.__class__ is bool else self.by_value).get(value)
            except TypeError:  # a list or mapping: no plain equality can match it
                hits = None
            if hits:
                for rule, test in hits:
                    if test is None or test(event):
                        found.append(rule)
        if self.residual:
            indexed = len(found)
            for rule, test in self.residual:
                if test is None or test(event):
                    found.append(rule)
            if indexed and len(found) > indexed:
                found.sort(key=_by_name)
        return found


class RuleIndex:
    """All event rules, indexed for :meth:`match`; :meth:`explain` accounts for every rule."""

    def __init__(self, rules: Iterable[Rule]):
        self.rules: list[Rule] = sorted(rules, key=_by_name)
        exact: dict[str, list[Rule]] = {}
        globs: dict[str, list[Rule]] = {}
        for previous, rule in zip([None, *self.rules], self.rules):
            if previous is not None and previous.name == rule.name:
                raise ValueError(f"two event rules are named {rule.name!r}")
            for pattern in dict.fromkeys(rule.on):
                (globs if is_glob(pattern) else exact).setdefault(pattern, []).append(rule)
        self._type_tests = {rule: [_type_test(p) for p in rule.on] for rule in self.rules}
        self._finish(exact, globs)

    def _finish(self, exact: dict[str, list[Rule]], globs: dict[str, list[Rule]],
                reuse: "RuleIndex | None" = None, affected: set[str] = frozenset()) -> None:
        """Build the buckets; those of exact types outside ``affected`` are taken from ``reuse``."""
        self._exact_rules, self._glob_rules = exact, globs
        self._exact = {event_type: (reuse._exact[event_type] if reuse is not None
                                    and event_type not in affected and event_type in reuse._exact
                                    else _Bucket(rs)) for event_type, rs in exact.items()}
        self._globs = [(_type_test(pattern), rs) for pattern, rs in globs.items()]
        self._globs_by_prefix: dict[str, list[tuple[Callable[[str], bool], list[Rule]]]] = {}
        for pattern, rs in globs.items():
            self._globs_by_prefix.setdefault(literal_prefix(pattern), []).append((_type_test(pattern), rs))
        self._prefix_lengths = sorted({len(p) for p in self._globs_by_prefix})
        self._listens: dict[str, bool] = {}
        # Without globs the exact buckets are the whole answer; with globs this becomes a
        # bounded cache: event type -> bucket of its exact and glob rules together.
        self._by_type: dict[str, _Bucket] = dict(self._exact) if not globs else {}
        self._lock = threading.Lock()

    def updated(self, changed: dict[str, Rule | None]) -> "RuleIndex":
        """A new index with the rules named in ``changed`` replaced (``None``: removed, a name
        not present: added). Only the buckets of the event types those rules listen to (before
        or after) are rebuilt; the rest are shared with this index, which stays as it was."""
        index = RuleIndex.__new__(RuleIndex)
        before = [rule for rule in self.rules if rule.name in changed]
        after = [rule for rule in changed.values() if rule is not None]
        index.rules = sorted([r for r in self.rules if r.name not in changed] + after, key=_by_name)
        exact, globs = dict(self._exact_rules), dict(self._glob_rules)
        affected: set[str] = set()
        for rule in before:
            for pattern in dict.fromkeys(rule.on):
                table = globs if is_glob(pattern) else exact
                left = [r for r in table[pattern] if r is not rule]
                if left:
                    table[pattern] = left
                else:
                    del table[pattern]
                affected.add(pattern)
        for rule in after:
            for pattern in dict.fromkeys(rule.on):
                table = globs if is_glob(pattern) else exact
                table[pattern] = sorted([*table.get(pattern, ()), rule], key=_by_name)
                affected.add(pattern)
        index._type_tests = {r: t for r, t in self._type_tests.items() if r.name not in changed}
        index._type_tests.update({rule: [_type_test(p) for p in rule.on] for rule in after})
        index._finish(exact, globs, reuse=self, affected=affected)
        return index

    def __len__(self) -> int:
        return len(self.rules)

    def match(self, event: dict) -> list[Rule]:
        """Rules whose type pattern and conditions match ``event``, ordered by name."""
        event_type = event.get("type")
        try:
            bucket = self._by_type.get(event_type)
        except TypeError:  # an unhashable type field matches nothing
            return []
        if bucket is None:
            if not self._globs or not isinstance(event_type, str):
                return []
            bucket = self._bucket_for(event_type)
        return bucket.match(event)

    def _bucket_for(self, event_type: str) -> _Bucket:
        with self._lock:
            bucket = self._by_type.get(event_type)
            if bucket is not None:
                return bucket
            extra = [rs for test, rs in self._candidate_globs(event_type) if test(event_type)]
            bucket = self._exact.get(event_type)
            if extra or bucket is None:
                rules = {r for rs in [self._exact_rules.get(event_type, []), *extra] for r in rs}
                bucket = _Bucket(sorted(rules, key=_by_name))
            if len(self._by_type) >= CACHE_SIZE:  # first in, first out
                del self._by_type[next(iter(self._by_type))]
            self._by_type[event_type] = bucket
            return bucket

    def _candidate_globs(self, event_type: str):
        """The globs whose literal prefix ``event_type`` starts with (only they can match)."""
        by_prefix = self._globs_by_prefix
        for length in self._prefix_lengths:
            if length > len(event_type):
                break
            found = by_prefix.get(event_type[:length])
            if found:
                yield from found

    def listens(self, event_type: str) -> bool:
        """Whether any rule's type pattern matches ``event_type`` (conditions aside): an exact
        type is one lookup, a new type is tested against the globs sharing its prefix only."""
        found = self._listens.get(event_type)
        if found is None:
            found = event_type in self._exact or any(
                test(event_type) for test, _ in self._candidate_globs(event_type))
            with self._lock:
                if len(self._listens) >= CACHE_SIZE:  # first in, first out
                    self._listens.pop(next(iter(self._listens)), None)
                self._listens[event_type] = found
        return found

    def explain(self, event: dict) -> list[tuple[Rule, bool, str]]:
        """``(rule, matched, reason)`` for every rule, ordered by name: why each did or did not."""
        event_type = event.get("type", MISSING)
        out = []
        for rule in self.rules:
            reason = type_reason(rule, self._type_tests[rule], event_type) or rule.condition.explain(event)
            out.append((rule, reason is None, reason or "matched"))
        return out


def type_reason(rule: Rule, tests: list[Callable[[str], bool]] | None, event_type: Any) -> str | None:
    """Why ``rule`` does not listen to ``event_type`` (None when it does); ``tests``: the rule's
    compiled type tests, made here when not given."""
    if event_type is MISSING:
        return "event has no type"
    if not isinstance(event_type, str):
        return f"type {event_type!r} is not a string"
    if any(test(event_type) for test in (tests or [_type_test(p) for p in rule.on])):
        return None
    if len(rule.on) == 1:
        return f"type {event_type!r} does not match {rule.on[0]!r}"
    return f"type {event_type!r} does not match any of {', '.join(map(repr, rule.on))}"


def explain_rules(rules: Iterable[Rule], event: dict) -> list[tuple[Rule, bool, str]]:
    """:meth:`RuleIndex.explain` without building an index (one event, once): a rule whose
    type does not match is never asked about its conditions, which may be left uncompiled."""
    event_type = event.get("type", MISSING)
    out = []
    for rule in sorted(rules, key=_by_name):
        reason = type_reason(rule, None, event_type) or rule.condition.explain(event)
        out.append((rule, reason is None, reason or "matched"))
    return out
