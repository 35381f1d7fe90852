"""Plugin schemas are checked against the metaschema once, then remembered by digest."""

from __future__ import annotations

import json

import pytest
from jsonschema import Draft202012Validator

from taskengine_core import schema_checks
from taskengine_core.cache_dir import cache_path

VALID = {"type": "object", "properties": {"host": {"type": "string"}}, "required": ["host"]}
INVALID = {"type": "object", "properties": {"host": {"type": 5}}}


@pytest.fixture(autouse=True)
def fresh(tmp_path, monkeypatch):
    monkeypatch.setenv("TASKENGINE_HOME", str(tmp_path))
    schema_checks.forget()
    yield
    schema_checks.forget()


@pytest.fixture
def checks(monkeypatch):
    """How many times jsonschema's own check ran."""
    calls = []
    real = Draft202012Validator.check_schema.__func__

    def counting(cls, schema, *args, **kwargs):
        calls.append(schema)
        return real(cls, schema, *args, **kwargs)

    monkeypatch.setattr(Draft202012Validator, "check_schema", classmethod(counting))
    return calls


def test_a_valid_schema_is_checked_once_and_remembered_across_processes(checks):
    assert schema_checks.schema_problem(VALID) is None
    assert len(checks) == 1
    schema_checks.forget()  # as a new process would start
    assert schema_checks.schema_problem(VALID) is None
    assert schema_checks.schema_problem(dict(VALID)) is None  # the same text, another object
    assert len(checks) == 1
    assert schema_checks.schema_problem({**VALID, "required": []}) is None  # another schema: checked
    assert len(checks) == 2


def test_an_invalid_schema_is_refused_every_time_and_never_remembered(checks):
    first = schema_checks.schema_problem(INVALID)
    assert first is not None and "5 is not valid" in first
    schema_checks.forget()
    assert schema_checks.schema_problem(INVALID) == first
    assert len(checks) == 2
    stored = json.loads(cache_path(schema_checks.CACHE_FILE).read_text()) if cache_path(
        schema_checks.CACHE_FILE).exists() else {"valid": []}
    assert stored["valid"] == []


def test_a_cache_written_under_another_jsonschema_or_damaged_is_not_trusted(checks):
    assert schema_checks.schema_problem(VALID) is None
    path = cache_path(schema_checks.CACHE_FILE)
    data = json.loads(path.read_text())
    path.write_text(json.dumps({**data, "jsonschema": ["/elsewhere/jsonschema", 1]}))
    schema_checks.forget()
    assert schema_checks.schema_problem(VALID) is None
    assert len(checks) == 2
    path.write_text("{not json")
    schema_checks.forget()
    assert schema_checks.schema_problem(VALID) is None
    assert len(checks) == 3


def test_a_plugin_with_an_invalid_schema_is_still_refused_with_the_message(tmp_path):
    from taskengine_core.errors import RegistrationError
    from taskengine_core.registry import PluginInfo, _checked_schema

    plugin = PluginInfo("broken", "broken-dist", "1.0")
    with pytest.raises(RegistrationError, match=r"action 'x' from plugin broken \(broken-dist 1.0\): "
                                                 r"invalid JSON Schema: 5 is not valid"):
        _checked_schema("action", "x", INVALID, plugin)


def test_a_rule_schema_check_compiled_from_the_cache_judges_as_a_fresh_one(tmp_path):
    """fastjsonschema's compiled code is kept in the cache directory; the validator read back
    refuses and accepts exactly what a freshly generated one does, and a damaged cache file is
    generated again."""
    import fastjsonschema

    from taskengine_core.recurrence import SCHEDULE_SCHEMA
    from taskengine_core.rules.schema_check import FORMATS, SchemaCheck

    fresh = fastjsonschema.compile(SCHEDULE_SCHEMA, use_default=False, formats=FORMATS)
    values = [{"every": "day", "at": "02:00"}, {"cron": "*/5 * * * *"}, {"every": "fortnight"},
              {"once": "2026-12-24T00:00"}, {"every": "day", "at": "25:00"}, {"max_lateness": "nope"},
              {"every": "day", "max_lateness": "10m"}, {"every": 3}, {}]

    def verdict(check, value):
        try:
            check(value)
            return "valid"
        except fastjsonschema.JsonSchemaValueException as exc:
            return exc.message

    first = SchemaCheck(SCHEDULE_SCHEMA)._fast  # generates and stores the code
    [stored] = list((tmp_path / "cache").glob("fastjsonschema-*.bin"))
    from_cache = SchemaCheck(SCHEDULE_SCHEMA)._fast
    for value in values:
        assert verdict(first, value) == verdict(from_cache, value) == verdict(fresh, value), value
    assert any(verdict(fresh, v) != "valid" for v in values) and any(verdict(fresh, v) == "valid" for v in values)
    stored.write_bytes(b"\x00damaged")
    again = SchemaCheck(SCHEDULE_SCHEMA)._fast
    assert [verdict(again, v) for v in values] == [verdict(fresh, v) for v in values]
    assert stored.read_bytes() != b"\x00damaged"


def test_the_cache_keeps_only_the_newest_compiled_checks(tmp_path, monkeypatch):
    from taskengine_core.rules import schema_check

    monkeypatch.setattr(schema_check, "KEEP_COMPILED", 3)
    for n in range(5):
        schema_check.SchemaCheck({"type": "object", "properties": {f"p{n}": {"type": "integer"}}})._fast
    assert len(list((tmp_path / "cache").glob("fastjsonschema-*.bin"))) == 3
    check = schema_check.SchemaCheck({"type": "object", "properties": {"p0": {"type": "integer"}}})._fast
    check({"p0": 1})  # an evicted one is generated again
