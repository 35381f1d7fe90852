"""The event-rule index: which rules an event triggers, why each did or not, and at what cost."""

from __future__ import annotations

import fnmatch
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from taskengine_core import rule_index
from taskengine_core.conditions import compile_conditions
from taskengine_core.rule_index import Rule, RuleIndex


def rule(name, on, when=None, payload=None):
    return Rule(name, on, compile_conditions(when), payload)


def names(rules):
    return [r.name for r in rules]


def event(type_, **data):
    return {"id": "e", "type": type_, "source": "test", "time": "2026-11-25T10:00:00Z",
            "data": data}


RULES = [
    rule("alice-login", ["user.login"], {"data.user": "alice"}, payload=["gpu-vm-on"]),
    rule("sync-errors", ["sync.*"]),
    rule("multi", ["user.login", "user.logout"]),
    rule("everything", ["*"]),
    rule("big", ["alarm.raised"], {"data.level": {"in": ["error", "critical"]},
                                   "data.count": {">=": 3}, "data.host": {"regex": "^db-"},
                                   "data.note": {"exists": False}}),
]


@pytest.mark.parametrize("evt, expected", [
    (event("user.login", user="alice"), ["alice-login", "everything", "multi"]),
    (event("user.login", user="bob"), ["everything", "multi"]),
    (event("user.logout", user="alice"), ["everything", "multi"]),
    (event("sync.failed"), ["everything", "sync-errors"]),
    (event("sync.a.b"), ["everything", "sync-errors"]),  # * crosses dots, as in fnmatch
    (event("sync"), ["everything"]),
    (event("async.failed"), ["everything"]),
    (event("alarm.raised", level="critical", count=3, host="db-1"), ["big", "everything"]),
    (event("alarm.raised", level="critical", count=3, host="db-1", note=""), ["everything"]),
    (event("alarm.raised", level="warning", count=3, host="db-1"), ["everything"]),
    ({"data": {"user": "alice"}}, []),  # no type: nothing, not even "*"
    ({"type": ["user.login"]}, []),
    ({"type": 7}, []),
])
def test_match(evt, expected):
    assert names(RuleIndex(RULES).match(evt)) == expected


def test_payload_is_handed_back_untouched():
    matched = RuleIndex(RULES).match(event("user.login", user="alice"))
    assert matched[0] is RULES[0] and matched[0].payload == ["gpu-vm-on"]


@pytest.mark.parametrize("pattern, yes, no", [
    ("sync.?", ["sync.a"], ["sync.ab", "sync."]),
    ("sync.[ab]*", ["sync.a", "sync.bz"], ["sync.c"]),
    ("*.failed", ["sync.failed", "a.b.failed"], ["failed", "sync.failed.x"]),
    ("Sync.*", ["Sync.x"], ["sync.x"]),  # case matters
])
def test_glob_patterns(pattern, yes, no):
    index = RuleIndex([rule("g", [pattern])])
    for type_ in yes:
        assert names(index.match(event(type_))) == ["g"], type_
    for type_ in no:
        assert index.match(event(type_)) == [], type_


def test_a_rule_matching_through_several_patterns_is_returned_once():
    index = RuleIndex([rule("r", ["a.b", "a.*", "*", "a.b"])])
    assert names(index.match(event("a.b"))) == ["r"]


def test_on_may_be_a_single_string_and_must_not_be_empty():
    assert rule("r", "user.login").on == ["user.login"]
    with pytest.raises(ValueError, match="'on' must be an event type"):
        rule("r", [])
    with pytest.raises(ValueError, match="'on' must be an event type"):
        rule("r", ["ok", ""])


def test_duplicate_rule_names_are_refused():
    with pytest.raises(ValueError, match="two event rules are named 'x'"):
        RuleIndex([rule("x", ["a"]), rule("y", ["b"]), rule("x", ["c"])])


def test_order_is_by_name_whatever_the_input_order_or_index_path():
    rules = [rule(f"r{n}", ["t"] if n % 3 else ["*"],
                  {"data.user": "u"} if n % 2 else {"data.n": 1}) for n in range(12)]
    expected = sorted(r.name for r in rules)
    for seed in range(5):
        random.Random(seed).shuffle(rules)
        assert names(RuleIndex(rules).match(event("t", user="u", n=1))) == expected
        assert names(r for r, _, _ in RuleIndex(rules).explain(event("t"))) == expected


@pytest.mark.parametrize("value, expected", [
    (True, ["flag-true"]), (1, ["one"]), (1.0, ["one"]), (0, []), (False, []), (None, ["none"]),
    ([1], []), ({"a": 1}, []), ("1", []),
])
def test_indexed_equality_keeps_booleans_numbers_and_strings_apart(value, expected):
    index = RuleIndex([rule("flag-true", ["t"], {"data.v": True}),
                       rule("one", ["t"], {"data.v": 1}), rule("none", ["t"], {"data.v": None})])
    assert names(index.match(event("t", v=value))) == expected


def test_explain_accounts_for_every_rule():
    index = RuleIndex(RULES)
    evt = event("user.login", user="bob")
    report = {r.name: (matched, reason) for r, matched, reason in index.explain(evt)}
    assert report == {
        "alice-login": (False, "data.user is 'bob', expected 'alice'"),
        "big": (False, "type 'user.login' does not match 'alarm.raised'"),
        "everything": (True, "matched"),
        "multi": (True, "matched"),
        "sync-errors": (False, "type 'user.login' does not match 'sync.*'"),
    }
    report = {r.name: reason for r, _, reason in index.explain(event("x"))}
    assert report["multi"] == "type 'x' does not match any of 'user.login', 'user.logout'"
    assert {reason for _, _, reason in index.explain({"data": {}})} == {"event has no type"}
    assert {reason for _, _, reason in index.explain({"type": 3})} == {"type 3 is not a string"}


def test_glob_cache_stays_bounded_and_correct(monkeypatch):
    monkeypatch.setattr(rule_index, "CACHE_SIZE", 8)
    index = RuleIndex([rule("glob", ["t.*"], {"data.n": 1}), rule("exact", ["t.3"])])
    for round_ in range(3):
        for n in range(50):
            expected = ["glob"] if n != 3 else ["exact", "glob"]
            assert names(index.match(event(f"t.{n}", n=1))) == expected
            assert len(index._by_type) <= 8


class CountingDict(dict):
    """A dict that counts reads, to measure the work done per event."""

    reads = 0

    def get(self, *args):
        CountingDict.reads += 1
        return super().get(*args)

    def __getitem__(self, key):
        CountingDict.reads += 1
        return super().__getitem__(key)


@pytest.mark.parametrize("with_globs", [False, True])
def test_work_per_event_does_not_grow_with_the_number_of_rules(with_globs):
    def reads_per_event(rule_count):
        rules = [rule(f"r{i}", [f"type-{i % 10}"], {"data.user": f"user-{i // 10}"})
                 for i in range(rule_count)]
        if with_globs:
            rules += [rule("g1", ["type-*"], {"data.user": "user-0"}), rule("g2", ["other.*"])]
        index = RuleIndex(rules)
        events = [CountingDict(type=f"type-{n % 10}", data=CountingDict(user=f"user-{n % 2}"))
                  for n in range(10)]
        for evt in events:  # warm the glob cache
            index.match(evt)
        CountingDict.reads = 0
        matched = sum(len(index.match(evt)) for evt in events)
        return CountingDict.reads, matched

    small, large = reads_per_event(20), reads_per_event(4_000)
    assert small[0] == large[0] <= 30
    assert small[1] == large[1] >= 10


# Random rules and events: the index must agree with testing every rule one by one.
TYPES = ["a", "a.b", "a.c", "b", "b.a.c"]
PATTERNS = st.sampled_from(TYPES + ["a.*", "*", "?", "*.c", "[ab]", "b.?.c"])
VALUES = st.sampled_from(["x", "y", 0, 1, 1.0, True, False, None, [1]])
WHENS = st.dictionaries(
    st.sampled_from(["data.u", "data.u", "data.v", "data.l.0", "source"]),
    st.one_of(VALUES, VALUES, st.sampled_from([{"!=": "x"}, {">": 0}, {"in": ["x", 1]},
                                               {"exists": False}, {"eq": 1}, {"regex": "^y"}])),
    max_size=3,
).map(lambda d: d if len(d) < 3 else {**d, "any": [{"data.u": "x"}, {"data.v": 1}]})
RULE_SPECS = st.lists(st.tuples(st.lists(PATTERNS, min_size=1, max_size=3), WHENS), max_size=25)
EVENTS = st.lists(st.fixed_dictionaries(
    {"type": st.sampled_from(TYPES + ["c", "a.b.c"])},
    optional={"source": VALUES, "data": st.dictionaries(
        st.sampled_from(["u", "v", "l"]), st.one_of(VALUES, st.lists(VALUES, max_size=2)))},
), min_size=1, max_size=10)


def naive_match(rules, evt):
    return [r for r in sorted(rules, key=lambda r: r.name)
            if any(fnmatch.fnmatchcase(evt["type"], p) for p in r.on) and r.condition.matches(evt)]


@settings(max_examples=300, deadline=None)
@given(specs=RULE_SPECS, events=EVENTS, seed=st.integers(0, 1000))
def test_index_agrees_with_testing_every_rule(specs, events, seed):
    rules = [rule(f"rule-{random.Random(seed + i).randrange(10**6):06d}-{i}", on, when)
             for i, (on, when) in enumerate(specs)]
    index = RuleIndex(rules)
    for evt in events:
        expected = naive_match(rules, evt)
        assert index.match(evt) == expected
        assert index.match(evt) == expected  # second time through the glob cache
        assert [r for r, matched, _ in index.explain(evt) if matched] == expected


# -- listens: answered from the index, not by testing every rule (issue 9) ------------------------

def test_listens_agrees_with_fnmatch_over_every_pattern():
    rng = random.Random(5)
    parts = ["job", "sync", "a", "b", "done", "x"]
    patterns = []
    for _ in range(300):
        words = [rng.choice(parts + ["*", "?", "[ab]"]) for _ in range(rng.randrange(1, 4))]
        patterns.append(".".join(words) if rng.random() < 0.7 else "".join(words))
    index = RuleIndex([rule(f"r{i}", [p]) for i, p in enumerate(patterns)])
    for _ in range(2000):
        event_type = ".".join(rng.choice(parts + ["1", "ab"]) for _ in range(rng.randrange(1, 5)))
        expected = any(fnmatch.fnmatchcase(event_type, p) for p in patterns)
        assert index.listens(event_type) is expected, event_type


def test_a_new_event_type_is_tested_only_against_globs_sharing_its_prefix(monkeypatch):
    tested = []
    real = rule_index._type_test

    def counting(pattern):
        test = real(pattern)
        return lambda event_type: tested.append(pattern) or test(event_type)

    monkeypatch.setattr(rule_index, "_type_test", counting)
    rules = [rule(f"exact-{i}", [f"job.{i}.done"]) for i in range(5000)]
    rules += [rule(f"glob-{i}", [f"batch.{i}.*"]) for i in range(5000)]
    index = RuleIndex(rules)
    assert index.listens("job.7.done") and not index.listens("job.7.started")
    assert index.listens("batch.42.finished")
    assert names(index.match(event("batch.42.finished"))) == ["glob-42"]
    assert not index.listens("other.thing")
    # only batch.42.* (prefix "batch.42.") was ever a candidate; the 9,999 other rules were not
    assert set(tested) == {"batch.42.*"}


def test_the_listens_cache_is_bounded(monkeypatch):
    monkeypatch.setattr(rule_index, "CACHE_SIZE", 100)
    index = RuleIndex([rule("done", ["job.*.done"]), rule("exact", ["ping"])])
    for n in range(1000):
        assert index.listens(f"job.{n}.done")
        assert not index.listens(f"job.{n}.started")
    assert len(index._listens) <= 100
    assert len(index._by_type) <= 100 or not index._globs
    assert index.listens("ping") and index.listens("job.1.done")


def test_runtime_listens_answers_from_the_rule_index():
    from taskengine_core.model import Runtime

    index = RuleIndex([rule("done", ["task.succeeded"]), rule("jobs", ["job.*"])])
    runtime = Runtime(1, {}, index, {})
    assert runtime.listens("task.succeeded") and runtime.listens("job.9")
    assert not runtime.listens("task.failed")
    assert not hasattr(runtime, "_listened")  # no unbounded per-runtime cache
