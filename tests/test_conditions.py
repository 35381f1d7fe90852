"""Conditions of event rules (``when:``): operators, nesting, explanations, schema."""

from __future__ import annotations

import re

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from taskengine_core.conditions import CONDITION_SCHEMA, compile_conditions, get_path

EVENT = {
    "id": "e1",
    "type": "alarm.raised",
    "source": "cli",
    "time": "2026-11-25T10:00:00Z",
    "data": {
        "user": "alice", "count": 3, "ratio": 0.5, "flag": True, "none": None,
        "host": "db-7", "tags": ["red", "blue"], "items": [{"name": "first"}, 2],
        "vm": {"name": "gpu-alice"}, "numbers": {"0": "zero-key"},
    },
}


def holds(when: dict, event: dict = EVENT) -> bool:
    return compile_conditions(when).matches(event)


def why(when: dict, event: dict = EVENT) -> str | None:
    return compile_conditions(when).explain(event)


@pytest.mark.parametrize("path, found, value", [
    ("type", True, "alarm.raised"),
    ("data.vm.name", True, "gpu-alice"),
    ("data.items.0.name", True, "first"),
    ("data.items.1", True, 2),
    ("data.items.2", False, None),
    ("data.numbers.0", True, "zero-key"),
    ("data.host.0", False, None),  # strings are not indexed
    ("data.none", True, None),
    ("data.nothing", False, None),
    ("data.user.name", False, None),
])
def test_get_path(path, found, value):
    assert get_path(EVENT, path) == (found, value)


@pytest.mark.parametrize("when, expected", [
    ({"data.user": "alice"}, True),
    ({"data.user": "bob"}, False),
    ({"data.count": 3}, True),
    ({"data.count": 3.0}, True),
    ({"data.count": "3"}, False),
    ({"data.flag": True}, True),
    ({"data.flag": 1}, False),  # booleans are not numbers
    ({"data.count": True}, False),
    ({"data.none": None}, True),
    ({"data.nothing": None}, False),  # missing is not null
    ({"data.tags": ["red", "blue"]}, True),  # a list value means "the field equals this list"
    ({"data.tags": ["blue", "red"]}, False),
    ({"data.tags": "red"}, False),
    ({"data.vm": {"eq": {"name": "gpu-alice"}}}, True),
    ({"data.user": {"eq": "alice"}, "data.count": {"==": 3}}, True),
    ({"data.user": {"ne": "bob"}}, True),
    ({"data.user": {"!=": "alice"}}, False),
    ({"data.nothing": {"!=": "alice"}}, False),  # operators on a missing path are false
    ({"data.user": {"in": ["alice", "bob"]}}, True),
    ({"data.user": {"in": ["carol"]}}, False),
    ({"data.count": {"in": [1, 2, 3]}}, True),
    ({"data.flag": {"in": [1, 0]}}, False),
    ({"data.nothing": {"in": ["alice"]}}, False),
    ({"data.user": {"not_in": ["bob"]}}, True),
    ({"data.user": {"not_in": ["alice", 1]}}, False),
    ({"data.nothing": {"not_in": ["bob"]}}, False),
    ({"data.host": {"regex": "^db-"}}, True),
    ({"data.host": {"regex": "^web-"}}, False),
    ({"data.count": {"regex": "3"}}, False),  # regex applies to strings only
    ({"data.nothing": {"regex": ".*"}}, False),
    ({"data.user": {"exists": True}}, True),
    ({"data.none": {"exists": True}}, True),
    ({"data.nothing": {"exists": True}}, False),
    ({"data.nothing": {"exists": False}}, True),
    ({"data.user": {"exists": False}}, False),
    ({"data.host": {"contains": "db"}}, True),
    ({"data.tags": {"contains": "red"}}, True),
    ({"data.tags": {"contains": "green"}}, False),
    ({"data.vm": {"contains": "name"}}, True),
    ({"data.count": {"contains": 3}}, False),
    ({"data.nothing": {"contains": "x"}}, False),
    ({"data.count": {">=": 3, "<": 4}}, True),  # several operators: all must hold
    ({"data.count": {">=": 3, "<": 3}}, False),
])
def test_operators(when, expected):
    assert holds(when) is expected


@pytest.mark.parametrize("spellings", [("<", "lt"), ("<=", "le"), (">", "gt"), (">=", "ge")])
@pytest.mark.parametrize("bound", [2, 3, 4, 2.5, 3.0])
def test_comparisons_and_their_word_spellings(spellings, bound):
    expected = {"<": 3 < bound, "<=": 3 <= bound, ">": 3 > bound, ">=": 3 >= bound}[spellings[0]]
    for op in spellings:
        assert holds({"data.count": {op: bound}}) is expected


@pytest.mark.parametrize("when", [
    {"data.user": {"<": 5}},  # str < int
    {"data.count": {"<": "5"}},  # int < str
    {"data.flag": {">": 0}},  # bool is not a number
    {"data.tags": {">": "a"}},
    {"data.nothing": {"<": 5}},
    {"data.nothing": {">=": "a"}},
])
def test_comparing_incompatible_or_missing_values_is_false_not_an_error(when):
    assert holds(when) is False
    assert why(when) is not None


def test_strings_compare_as_strings():
    assert holds({"time": {">=": "2026-11-25T00:00:00Z", "<": "2026-11-26"}})
    assert not holds({"data.user": {">": "bob"}})


def test_all_any_not_nest():
    nested = {
        "any": [{"data.a": 1}, {"data.b": {"!=": 2}}],
        "not": {"data.c": 3},
        "all": [{"data.d": {"<": 5}}],
    }
    assert holds(nested, {"data": {"a": 1, "d": 4}})
    assert holds(nested, {"data": {"a": 0, "b": 1, "d": 4}})
    assert not holds(nested, {"data": {"a": 0, "b": 2, "d": 4}})  # any fails
    assert not holds(nested, {"data": {"a": 1, "d": 4, "c": 3}})  # not fails
    assert not holds(nested, {"data": {"a": 1, "d": 5}})  # all fails
    assert not holds(nested, {"data": {"a": 1}})  # d missing
    deep = {"any": [{"all": [{"data.a": 1}, {"not": {"any": [{"data.b": 1}, {"data.b": 2}]}}]}]}
    assert holds(deep, {"data": {"a": 1, "b": 3}})
    assert not holds(deep, {"data": {"a": 1, "b": 2}})
    assert holds({"not": {"data.x": 1}}, {"data": {}})  # "missing or not 1" is spelled with not


def test_empty_conditions_always_match():
    assert compile_conditions(None).matches({})
    assert compile_conditions({}).explain(EVENT) is None


@pytest.mark.parametrize("when, event_data, reason", [
    ({"data.user": "alice"}, {"user": "bob"}, "data.user is 'bob', expected 'alice'"),
    ({"data.count": {">=": 3}}, {"count": 2}, "data.count is 2, expected >= 3"),
    ({"data.count": {"ge": 3}}, {"count": "7"}, "data.count is '7', expected >= 3"),
    ({"data.level": {"in": ["error", "critical"]}}, {}, "data.level is missing"),
    ({"data.level": {"in": ["error", "critical"]}}, {"level": "info"},
     "data.level is 'info', expected in ['error', 'critical']"),
    ({"data.level": {"not_in": ["info"]}}, {"level": "info"},
     "data.level is 'info', expected not in ['info']"),
    ({"data.b": {"ne": 2}}, {"b": 2}, "data.b is 2, expected != 2"),
    ({"data.host": {"regex": "^db-"}}, {"host": "web-1"},
     "data.host is 'web-1', expected to match regex '^db-'"),
    ({"data.note": {"exists": False}}, {"note": "x"}, "data.note is 'x', expected to be missing"),
    ({"data.tags": {"contains": "x"}}, {"tags": ["a"]},
     "data.tags is ['a'], expected to contain 'x'"),
    ({"data.flag": True}, {"flag": 1}, "data.flag is 1, expected True"),
    ({"data.a": 1, "data.b": 2}, {"a": 0, "b": 0}, "data.a is 0, expected 1"),  # the FIRST failure
    ({"data.n": {">": 0, "<": 10}}, {"n": 10}, "data.n is 10, expected < 10"),
    ({"data.s": "x"}, {"s": "y" * 100}, "data.s is '" + "y" * 56 + "..., expected 'x'"),
    ({"any": [{"data.a": 1}, {"data.b": {"!=": 2}}]}, {"b": 2},
     "none of any[...] matched: data.a is missing; data.b is 2, expected != 2"),
    ({"not": {"data.c": 3}}, {"c": 3}, "not[...] matched: data.c is 3"),
    ({"all": [{"data.a": 1}, {"data.d": {"<": 5}}]}, {"a": 1, "d": 5}, "data.d is 5, expected < 5"),
])
def test_explain_names_the_first_failing_condition(when, event_data, reason):
    condition = compile_conditions(when)
    event = {"type": "x", "data": event_data}
    assert condition.explain(event) == reason
    assert condition.matches(event) is False


def test_regex_is_compiled_once(monkeypatch):
    import re2

    from taskengine_core import conditions

    conditions._compiled_regex.cache_clear()
    compiled = []
    real = re2.compile
    monkeypatch.setattr(re2, "compile", lambda p, *a, **k: compiled.append(p) or real(p, *a, **k))
    condition = compile_conditions({"data.host": {"regex": "^db-[0-9]+$"}})
    assert compiled == ["^db-[0-9]+$"]
    results = [condition.matches({"data": {"host": f"db-{n}"}}) for n in range(100)]
    assert all(results) and compiled == ["^db-[0-9]+$"]


def test_equalities_list_only_top_level_hashable_plain_equalities():
    condition = compile_conditions({
        "data.user": "alice", "data.n": {"eq": 3}, "data.flag": False, "data.none": None,
        "data.tags": ["a"], "data.level": {"in": ["x"]}, "data.m": {"==": 1, "<": 5},
        "data.nan": float("nan"), "any": [{"data.z": 1}], "all": [{"data.y": 1}],
    })
    assert condition.equalities == {"data.user": "alice", "data.n": 3, "data.flag": False,
                                    "data.none": None}


def test_without_drops_only_that_equality():
    condition = compile_conditions({"data.user": "alice", "data.n": {">": 1}})
    rest = condition.without("data.user")
    assert rest.matches({"data": {"user": "bob", "n": 2}})
    assert not rest.matches({"data": {"user": "alice", "n": 1}})
    assert rest.equalities == {} and len(rest) == 1
    assert compile_conditions({"data.user": "a"}).without("data.user").tester() is None


@pytest.mark.parametrize("when, message", [
    ({"data.x": {"regex": "("}},
     "path 'data.x': bad regex '(': missing ): (; conditions use RE2 syntax"),
    ({"data.x": {"like": 1}}, "path 'data.x': unknown operator 'like'; expected one of "),
    ({"data.x": {"in": "abc"}}, "path 'data.x': 'in' expects a list, got 'abc'"),
    ({"data.x": {"not_in": 3}}, "path 'data.x': 'not_in' expects a list, got 3"),
    ({"data.x": {"exists": "yes"}}, "path 'data.x': 'exists' expects true or false, got 'yes'"),
    ({"data.x": {"<": True}}, "path 'data.x': '<' expects a number or a string, got True"),
    ({"data.x": {"gt": [1]}}, "path 'data.x': '>' expects a number or a string, got [1]"),
    ({"data.x": {}}, "path 'data.x': empty operator mapping"),
    ({"data..x": 1}, "bad path 'data..x': expected dotted names"),
    ({".x": 1}, "bad path '.x'"),
    ({True: 1}, "condition keys must be dotted paths, got True"),
    ({"any": []}, "any: expected a non-empty list of condition mappings"),
    ({"all": {"data.x": 1}}, "all: expected a non-empty list of condition mappings"),
    ({"not": [{"data.x": 1}]}, "not: conditions must be a mapping of path: value, got [{"),
    ({"any": [{"data.a": 1}, {"data.b": {"regex": "["}}]},
     "any[1]: path 'data.b': bad regex '['"),
    ({"all": [{"not": {"data.c": {"in": 1}}}]}, "all[0]: not: path 'data.c': 'in' expects a list"),
])
def test_invalid_conditions_raise_value_error_saying_where(when, message):
    with pytest.raises(ValueError) as info:
        compile_conditions(when)
    assert str(info.value).startswith(message)


def test_non_mapping_when_is_rejected():
    with pytest.raises(ValueError, match="conditions must be a mapping"):
        compile_conditions(["data.x"])  # type: ignore[arg-type]


VALIDATOR = jsonschema.Draft202012Validator(CONDITION_SCHEMA)


def test_schema_is_valid_and_its_defs_are_prefixed():
    jsonschema.Draft202012Validator.check_schema(CONDITION_SCHEMA)
    defs = CONDITION_SCHEMA["$defs"]
    assert defs and all(name.startswith("condition") for name in defs)


@pytest.mark.parametrize("when", [
    {"data.user": "alice"},
    {"data.level": {"in": ["error", "critical"]}, "data.count": {">=": 3},
     "data.host": {"regex": "^db-"}, "data.note": {"exists": False}},
    {"any": [{"data.a": 1}, {"data.b": {"!=": 2}}], "not": {"data.c": 3},
     "all": [{"data.d": {"<": 5}}]},
    {"data.tags": ["a", "b"], "data.none": None, "data.vm": {"eq": {"name": "x"}}},
])
def test_schema_accepts_what_compiles(when):
    VALIDATOR.validate(when)
    compile_conditions(when)


@pytest.mark.parametrize("when", [
    {"data.x": {"like": 1}}, {"data.x": {"in": "abc"}}, {"data.x": {"exists": "yes"}},
    {"data.x": {"<": True}}, {"data.x": {}}, {"data..x": 1}, {"any": []}, {"all": {"a": 1}},
    {"not": [{"a": 1}]}, {"any": [{"data.b": {"gt": [1]}}]},
])
def test_schema_rejects_what_does_not_compile(when):
    assert list(VALIDATOR.iter_errors(when))
    with pytest.raises(ValueError):
        compile_conditions(when)


# An independent, deliberately plain reading of the semantics, to check the compiled form against.
def ref_get(event, path):
    value = event
    for part in path.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return KeyError
    return value


def kind(value):
    kinds = {bool: "bool", int: "num", float: "num", str: "str", list: "list"}
    return kinds.get(type(value), "other")


def ref_equal(a, b):
    if kind(a) == "list" == kind(b):
        return len(a) == len(b) and all(ref_equal(x, y) for x, y in zip(a, b))
    return kind(a) == kind(b) and a == b


def ref_op(op, arg, value):
    if value is KeyError:
        return op == "exists" and arg is False
    if op in ("eq", "ne"):
        return ref_equal(value, arg) == (op == "eq")
    if op in ("in", "not_in"):
        return any(ref_equal(value, x) for x in arg) == (op == "in")
    if op in ("lt", "gt", "ge", "le"):
        if kind(value) != kind(arg) or kind(arg) not in ("num", "str"):
            return False
        return {"lt": value < arg, "gt": value > arg, "ge": value >= arg, "le": value <= arg}[op]
    if op == "regex":
        return isinstance(value, str) and re.search(arg, value) is not None
    if op == "exists":
        return arg is True
    return (isinstance(value, str) and isinstance(arg, str) and arg in value) or (
        isinstance(value, list) and any(ref_equal(x, arg) for x in value))


def ref_matches(when, event):
    for key, spec in when.items():
        if key == "all" and not all(ref_matches(c, event) for c in spec):
            return False
        if key == "any" and not any(ref_matches(c, event) for c in spec):
            return False
        if key == "not" and ref_matches(spec, event):
            return False
        if key not in ("all", "any", "not"):
            ops = spec if isinstance(spec, dict) else {"eq": spec}
            if not all(ref_op(op, arg, ref_get(event, key)) for op, arg in ops.items()):
                return False
    return True


PATHS = ["data.a", "data.a", "data.l", "data.l.0", "type"]
SCALARS = st.sampled_from(["x", "", 0, 1, 1.0, True, False, None])
VALUES = st.one_of(SCALARS, st.lists(SCALARS, max_size=2))
OPERATORS = st.one_of(
    st.tuples(st.sampled_from(["eq", "ne", "contains"]), VALUES),
    st.tuples(st.sampled_from(["in", "not_in"]), st.lists(SCALARS, max_size=3)),
    st.tuples(st.sampled_from(["lt", "gt", "ge", "le"]), st.sampled_from(["x", "y", 0, 1, 2.5])),
    st.tuples(st.just("regex"), st.sampled_from(["^x", "y$", "1", ""])),
    st.tuples(st.just("exists"), st.booleans()),
)
TESTS = st.one_of(VALUES, st.lists(OPERATORS, min_size=1, max_size=2).map(dict))
LEAVES = st.dictionaries(st.sampled_from(PATHS), TESTS, min_size=1, max_size=2)
GROUPS = [lambda items: {"any": items}, lambda items: {"all": items},
          lambda items: {"not": items[0]}]
WHENS = st.recursive(LEAVES, lambda inner: st.builds(
    lambda base, group, items: {**base, **group(items)},
    st.dictionaries(st.sampled_from(PATHS), TESTS, max_size=1),
    st.sampled_from(GROUPS), st.lists(inner, min_size=1, max_size=3),
), max_leaves=4)
EVENTS = st.fixed_dictionaries({
    "type": st.sampled_from(["x", "y", "1"]),
    "data": st.fixed_dictionaries({}, optional={"a": SCALARS, "b": VALUES, "l": VALUES}),
})


@settings(max_examples=300, deadline=None)
@given(path=st.sampled_from(PATHS), test=TESTS, event=EVENTS)
def test_one_path_agrees_with_a_plain_reference(path, test, event):
    assert compile_conditions({path: test}).matches(event) == ref_matches({path: test}, event)


@settings(max_examples=300, deadline=None)
@given(when=WHENS, event=EVENTS)
def test_compiled_conditions_agree_with_a_plain_reference(when, event):
    condition = compile_conditions(when)
    assert condition.matches(event) == ref_matches(when, event)
    assert (condition.explain(event) is None) == condition.matches(event)
    assert compile_conditions({"not": when}).matches(event) != condition.matches(event)
    assert VALIDATOR.is_valid(when)

