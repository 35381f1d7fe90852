"""Conditions of event rules: the ``when:`` mapping, compiled once and tested against each event.

Every entry of a ``when`` mapping must hold. A key is a dotted path into the event (``type``,
``data.vm.name``, list items as ``data.items.0``) or one of ``all``/``any`` (lists of mappings) and
``not`` (one mapping). A path's value is compared for equality, or is a mapping of operators that
must all hold. A missing path equals nothing and fails every operator except ``exists: false``
(``not: {data.x: 1}`` is how to say "missing or not 1"); values of different kinds (``"2" < 3``,
``true == 1``) never compare equal or ordered, they are simply false.

``regex`` uses RE2 (google-re2), which matches in time linear in the text: a pattern such as
``^(a+)+$`` cannot stall the evaluator on a hostile event, as it does with Python's ``re``
(27 a's took 10 s, doubling with each one more). RE2 has no backreferences or lookaround;
such patterns are refused when the rule file is checked.
"""

from __future__ import annotations

import functools
import operator
import re
from typing import Any, Callable

import re2

MISSING: Any = object()  # what a path that leads nowhere yields; equal to nothing

_OPERATORS = {
    "eq": "==", "==": "==", "ne": "!=", "!=": "!=", "in": "in", "not_in": "not_in",
    "lt": "<", "<": "<", "le": "<=", "<=": "<=", "gt": ">", ">": ">", "ge": ">=", ">=": ">=",
    "regex": "regex", "exists": "exists", "contains": "contains",
}
_ORDER = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}
_GROUPS = ("all", "any", "not")
_PATH_PATTERN = r"^[^.]+(\.[^.]+)*$"

_VALUE = {"type": ["string", "number", "boolean", "null", "array"]}
_COMPARABLE = {"type": ["number", "string"]}
CONDITION_SCHEMA: dict = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$ref": "#/$defs/condition",
    "$defs": {
        "condition": {
            "type": "object",
            "description": "every entry must hold: dotted event path -> value or operators; "
            "all/any (lists of conditions), not (one condition)",
            "properties": {
                "all": {"$ref": "#/$defs/conditionList", "description": "every condition holds"},
                "any": {"$ref": "#/$defs/conditionList", "description": "at least one holds"},
                "not": {"$ref": "#/$defs/condition", "description": "the condition does not hold"},
            },
            "propertyNames": {"pattern": _PATH_PATTERN},
            "additionalProperties": {"$ref": "#/$defs/conditionTest"},
        },
        "conditionList": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/condition"}},
        "conditionTest": {
            "description": "a value the field must equal, or a mapping of operators",
            "anyOf": [_VALUE, {"$ref": "#/$defs/conditionOperators"}],
        },
        "conditionOperators": {
            "type": "object",
            "minProperties": 1,
            "additionalProperties": False,
            "properties": {
                **{name: {} for name in ("eq", "==", "ne", "!=", "contains")},
                **{name: {"type": "array"} for name in ("in", "not_in")},
                **{name: _COMPARABLE for name, op in _OPERATORS.items() if op in _ORDER},
                "regex": {"type": "string", "format": "regex"},
                "exists": {"type": "boolean"},
            },
        },
    },
}


_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # problems come back as messages, not lines on stderr
_RE2_OPTIONS.never_capture = True  # conditions only ask whether it matches: no groups to track


@functools.lru_cache(maxsize=1024)
def _compiled_regex(pattern: str):
    return re2.compile(pattern, options=_RE2_OPTIONS)


def regex_problem(pattern: str) -> str | None:
    """Why ``pattern`` cannot be a condition's regex, or None when it can."""
    try:
        _compiled_regex(pattern)
    except re2.error as exc:
        detail = exc.args[0] if exc.args else exc
        if isinstance(detail, bytes):
            detail = detail.decode("utf-8", "replace")
        return (f"bad regex {pattern!r}: {detail}; conditions use RE2 syntax, which matches in "
                "linear time and has no backreferences (\\1) or lookaround ((?=...), (?<=...))")
    except (TypeError, UnicodeError, ValueError) as exc:
        return f"bad regex {pattern!r}: {exc}"
    return None


def _regex_search(pattern: str) -> Callable[[Any], bool]:
    compiled = _compiled_regex(pattern)
    engine, anchor = getattr(compiled, "_regexp", None), getattr(getattr(re2, "_Anchor", None),
                                                                 "UNANCHORED", None)
    if engine is not None and anchor is not None:
        # the C++ matcher itself: a yes/no needs none of the wrapper's offset bookkeeping,
        # which costs several times the match
        def search(text: str) -> bool:
            data = text.encode("utf-8")
            return engine.Match(anchor, data, 0, len(data))[0][0] != -1
    else:  # pragma: no cover - another google-re2 layout
        def search(text: str) -> bool:
            return compiled.search(text) is not None

    def matches(value: Any) -> bool:
        if not isinstance(value, str):
            return False
        try:
            return search(value)
        except UnicodeEncodeError:  # a lone surrogate in event data: match what can be encoded
            return search(value.encode("utf-8", "surrogatepass").decode("utf-8", "replace"))

    return matches


def _steps(path: str) -> tuple[tuple[str, int | None], ...]:
    if not isinstance(path, str) or not re.fullmatch(_PATH_PATTERN, path):
        raise ValueError(
            f"bad path {path!r}: expected dotted names such as data.user or data.items.0"
        )
    return tuple((p, int(p) if p.isascii() and p.isdigit() else None) for p in path.split("."))


def path_getter(path: str) -> Callable[[dict], Any]:
    """A function ``event -> value``, returning ``MISSING`` where ``path`` leads nowhere."""
    steps = _steps(path)
    if len(steps) == 2 and steps[0][1] is None and steps[1][1] is None:
        first, second = steps[0][0], steps[1][0]

        def get_two(event: dict) -> Any:  # the common case (data.user), kept short
            value = event.get(first, MISSING)
            return value.get(second, MISSING) if isinstance(value, dict) else MISSING

        return get_two

    def get(event: dict) -> Any:
        value: Any = event
        for key, index in steps:
            if isinstance(value, dict):
                value = value.get(key, MISSING)
                if value is MISSING:
                    return value
            elif index is not None and isinstance(value, (list, tuple)) and index < len(value):
                value = value[index]
            else:
                return MISSING
        return value

    return get


def get_path(event: dict, path: str) -> tuple[bool, Any]:
    """``(found, value)`` for a dotted ``path`` into ``event``; ``(False, None)`` when missing."""
    value = path_getter(path)(event) if isinstance(event, dict) else MISSING
    return (False, None) if value is MISSING else (True, value)


def same(a: Any, b: Any) -> bool:
    """Equality as JSON sees it: booleans are not numbers, lists compare item by item."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (list, tuple)) or isinstance(b, (list, tuple)):
        return (isinstance(a, (list, tuple)) and isinstance(b, (list, tuple))
                and len(a) == len(b) and all(map(same, a, b)))
    if isinstance(a, dict) or isinstance(b, dict):
        return (isinstance(a, dict) and isinstance(b, dict) and a.keys() == b.keys()
                and all(same(a[k], b[k]) for k in a))
    return a == b


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _operator(op: str, arg: Any, where: str) -> tuple[Callable[[Any], bool], str]:
    """The test for one operator and the text of what it expects (for explanations)."""
    if op in ("==", "!="):
        equal = (lambda v: same(v, arg)) if not isinstance(arg, str) else (lambda v: v == arg)
        if op == "==":
            return equal, _show(arg)
        return (lambda v: v is not MISSING and not equal(v)), f"!= {_show(arg)}"
    if op in ("in", "not_in"):
        if not isinstance(arg, list):
            raise ValueError(f"{where}: '{op}' expects a list, got {_show(arg)}")
        if all(isinstance(item, str) for item in arg):
            strings = frozenset(arg)
            member = lambda v: isinstance(v, str) and v in strings  # noqa: E731
        else:
            member = lambda v: any(same(v, item) for item in arg)  # noqa: E731
        if op == "in":
            return member, f"in {_show(arg)}"
        return (lambda v: v is not MISSING and not member(v)), f"not in {_show(arg)}"
    if op in _ORDER:
        compare = _ORDER[op]
        if isinstance(arg, str):
            return (lambda v: isinstance(v, str) and compare(v, arg)), f"{op} {_show(arg)}"
        if isinstance(arg, (int, float)) and not isinstance(arg, bool):
            return (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)
                    and compare(v, arg)), f"{op} {_show(arg)}"
        raise ValueError(f"{where}: '{op}' expects a number or a string, got {_show(arg)}")
    if op == "regex":
        if not isinstance(arg, str):
            raise ValueError(f"{where}: 'regex' expects a string, got {_show(arg)}")
        problem = regex_problem(arg)
        if problem:
            raise ValueError(f"{where}: {problem}")
        return _regex_search(arg), f"to match regex {arg!r}"
    if op == "exists":
        if not isinstance(arg, bool):
            raise ValueError(f"{where}: 'exists' expects true or false, got {_show(arg)}")
        return (lambda v: (v is not MISSING) is arg), "to exist" if arg else "to be missing"

    def contains(value: Any) -> bool:  # op == "contains"
        if isinstance(value, str):
            return isinstance(arg, str) and arg in value
        if isinstance(value, (list, tuple)):
            return any(same(item, arg) for item in value)
        return isinstance(value, dict) and isinstance(arg, str) and arg in value

    return contains, f"to contain {_show(arg)}"


class _Check:
    """One entry of a ``when`` mapping: a path with its tests, or an all/any/not group."""

    __slots__ = ("path", "equality", "test", "why")

    def __init__(self, path: str | None, test: Callable, why: Callable, equality: Any = MISSING):
        self.path, self.test, self.why, self.equality = path, test, why, equality


def _path_check(path: str, spec: Any, where: str) -> _Check:
    try:
        get = path_getter(path)
    except ValueError as exc:
        raise ValueError(f"{where}{exc}") from None
    where = f"{where}path {path!r}"
    if not isinstance(spec, dict):
        spec = {"==": spec}
    elif not spec:
        raise ValueError(f"{where}: empty operator mapping; to test for {{}} write {{eq: {{}}}}")
    tests = []
    for name, arg in spec.items():
        if name not in _OPERATORS:
            known = ", ".join(sorted(_OPERATORS))
            raise ValueError(f"{where}: unknown operator {name!r}; expected one of {known}")
        tests.append(_operator(_OPERATORS[name], arg, where))
    equality = MISSING
    if len(spec) == 1 and _OPERATORS[next(iter(spec))] == "==":
        value = next(iter(spec.values()))
        if isinstance(value, (str, int, float, type(None))) and value == value:  # not NaN
            equality = value

    if len(tests) == 1:
        single = tests[0][0]
        test = lambda event: single(get(event))  # noqa: E731
    else:
        tests_ = tuple(t for t, _ in tests)

        def test(event: dict) -> bool:
            value = get(event)
            for one in tests_:
                if not one(value):
                    return False
            return True

    def why(event: dict) -> str | None:
        value = get(event)
        for ok, expected in tests:
            if not ok(value):
                if value is MISSING:
                    return f"{path} is missing"
                return f"{path} is {_show(value)}, expected {expected}"
        return None

    return _Check(path, test, why, equality)


def _group_check(kind: str, spec: Any, where: str) -> _Check:
    if kind == "not":
        inner = _compile(spec, f"{where}not: ")

        def why_not(event: dict) -> str | None:
            if not inner.matches(event):
                return None
            seen = [f"{c.path} is {_show(c_value)}" for c in inner._checks if c.path
                    and (c_value := path_getter(c.path)(event)) is not MISSING]
            return "not[...] matched" + (": " + ", ".join(seen) if seen else "")

        return _Check(None, lambda event: not inner.matches(event), why_not)
    if not isinstance(spec, list) or not spec:
        raise ValueError(f"{where}{kind}: expected a non-empty list of condition mappings")
    parts = tuple(_compile(item, f"{where}{kind}[{i}]: ") for i, item in enumerate(spec))
    if kind == "all":
        return _Check(None, lambda event: all(p.matches(event) for p in parts),
                      lambda event: next(filter(None, (p.explain(event) for p in parts)), None))

    def why_any(event: dict) -> str | None:
        reasons = [p.explain(event) for p in parts]
        if None in reasons:
            return None
        return "none of any[...] matched: " + "; ".join(reasons)

    return _Check(None, lambda event: any(p.matches(event) for p in parts), why_any)


class Condition:
    """A compiled ``when`` mapping. Build it with :func:`compile_conditions`."""

    __slots__ = ("_checks", "_tests", "equalities", "_source")

    def __init__(self, checks: tuple[_Check, ...], source: Any = None):
        self._checks, self._source = checks, source
        self._tests = tuple(c.test for c in checks)
        #: top-level ``path: value`` equalities with a hashable value; the rule index uses them
        self.equalities: dict[str, Any] = {
            c.path: c.equality for c in checks if c.path and c.equality is not MISSING
        }

    def matches(self, event: dict) -> bool:
        for test in self._tests:
            if not test(event):
                return False
        return True

    def explain(self, event: dict) -> str | None:
        """``None`` when the event matches, else why not, naming the first failing condition."""
        for check in self._checks:
            reason = check.why(event)
            if reason is not None:
                return reason
        return None

    def without(self, path: str) -> Condition:
        """This condition minus its top-level equality on ``path`` (already checked elsewhere)."""
        return Condition(tuple(c for c in self._checks if c.path != path or c.equality is MISSING))

    def tester(self) -> Callable[[dict], bool] | None:
        """The cheapest callable equivalent to :meth:`matches`; ``None`` when always true."""
        if not self._tests:
            return None
        return self._tests[0] if len(self._tests) == 1 else self.matches

    def __len__(self) -> int:
        return len(self._checks)

    def __repr__(self) -> str:
        return f"Condition({_show(self._source)})" if self._source is not None else "Condition(...)"


def _compile(when: Any, where: str) -> Condition:
    if not isinstance(when, dict):
        raise ValueError(f"{where}conditions must be a mapping of path: value, got {_show(when)}")
    checks = []
    for key, spec in when.items():
        if key in _GROUPS:
            checks.append(_group_check(key, spec, where))
        elif isinstance(key, str):
            checks.append(_path_check(key, spec, where))
        else:
            raise ValueError(f"{where}condition keys must be dotted paths, got {_show(key)}")
    return Condition(tuple(checks), when)


def compile_conditions(when: dict | None) -> Condition:
    """Compile a ``when`` mapping (``None`` or ``{}`` always matches); ``ValueError`` if invalid."""
    return _compile({} if when is None else when, "")
