"""Bad command-line arguments get a clear message and the right exit status, never a
traceback, and write nothing."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from taskengine_core.cli import cli
from taskengine_core.cli._parse import MAX_DEPTH
from tests.conftest import dump_db

RULES = """
    tasks:
      t: {action: command.run, with: {argv: [echo, "{{ event.data.x | default('x') }}"], timeout: 5}}
"""


def invoke(*args):
    """The CLI as a user runs it: an unexpected exception becomes a traceback and exit 1."""
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture
def configured(applied, db_path):
    applied(RULES)
    return dump_db(db_path)


def assert_refused(result, exit_code: int, message: str) -> None:
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    assert result.exit_code == exit_code, result.output
    assert result.stderr.rstrip().endswith(message), result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize("args, shown", [
    (("audit", "--limit", "-5"), "-5 is not in the range 1<=x<=100000."),
    (("audit", "--limit", "0"), "0 is not in the range 1<=x<=100000."),
    (("audit", "list", "--limit", "99999999999999999999"),
     "99999999999999999999 is not in the range 1<=x<=100000."),
    (("audit", "--limit", "1e23"), "'1e23' is not a valid integer range."),
])
def test_audit_limit_out_of_range_is_a_usage_error(configured, db_path, args, shown):
    assert_refused(invoke(*args), 2, f"Error: Invalid value for '--limit': {shown}")
    assert dump_db(db_path) == configured


def test_audit_limit_in_range_lists(configured):
    result = invoke("audit", "--limit", "1", "--json")
    assert result.exit_code == 0 and len(json.loads(result.stdout)) == 1


@pytest.mark.parametrize("depth", [MAX_DEPTH, 100_000])
def test_emit_data_nested_too_deeply_is_refused(configured, db_path, depth):
    data = '{"a": ' + "[" * depth + "]" * depth + "}"
    assert_refused(invoke("emit", "deep.event", "--data", data), 2,
                   f"Error: --data is not valid JSON: nested more than {MAX_DEPTH} levels deep")
    assert dump_db(db_path) == configured


def test_emit_data_at_the_depth_limit_is_accepted(configured, db_path):
    depth = MAX_DEPTH - 1  # inside the data object, itself the first level
    data = '{"a": ' + "[" * depth + "]" * depth + "}"
    result = invoke("emit", "deep.event", "--data", data)
    assert result.exit_code == 0, result.output
    assert len(dump_db(db_path)) == len(configured) + 1


def test_emit_field_nested_too_deeply_is_refused(configured, db_path):
    deep_value = invoke("emit", "deep.event", "a=" + "[" * 5000 + "]" * 5000)
    assert_refused(deep_value, 2, f"Error: bad event field a=...: nested more than {MAX_DEPTH} levels deep")
    dotted = ".".join(["k"] * (MAX_DEPTH + 1))
    deep_key = invoke("emit", "deep.event", f"{dotted}=1")
    assert_refused(deep_key, 2, f"Error: bad event field {dotted}=...: nested more than {MAX_DEPTH} levels deep")
    mixed = invoke("emit", "deep.event", "--data", '{"a": ' + "[" * 40 + "]" * 40 + "}",
                   "b=" + "[" * 30 + "]" * 30)
    assert mixed.exit_code == 0, mixed.output  # each within the limit: together too
    assert len(dump_db(db_path)) == len(configured) + 1


@pytest.mark.parametrize("pair", ["a..b=1", ".a=1", "a.=1", "..=1"])
def test_emit_an_empty_key_is_a_usage_error(configured, db_path, pair):
    key = pair.partition("=")[0]
    assert_refused(invoke("emit", "x.y", pair), 2,
                   f"Error: bad event field {pair!r}: empty name in {key!r}; write KEY=VALUE or "
                   "KEY.SUBKEY=VALUE, or use --data JSON for keys with dots")
    assert dump_db(db_path) == configured


def test_a_dotted_key_still_nests(configured, db_path, run_cli):
    event_id = run_cli("emit", "x.y", "a.b=1").stdout.strip()
    import sqlite3

    (data,), = sqlite3.connect(db_path).execute("SELECT data FROM events WHERE id = ?", (event_id,))
    assert json.loads(data) == {"a": {"b": 1}}


@pytest.mark.parametrize("param, shown", [
    ("argv=5", "parameter argv: expected a list, got an integer 5"),
    ("timeout=-1", "parameter timeout: expected a number more than 0, got an integer -1"),
    ("nope=1", "parameter nope: unknown key 'nope'; expected one of: argv, cwd, env, inherit_env, "
               "max_output, ok_exit_codes, shell, stdin, timeout"),
    ("env.A=[1]", "parameter env.A: expected a string, got a list"),
    ('argv=["{{ x"]', "parameter argv[0]: syntax error on line 1: unexpected end of template, "
                      "expected 'end of print statement'."),
])
def test_tasks_run_checks_params_before_queuing(configured, db_path, param, shown):
    for wait in ((), ("--no-wait",)):
        result = invoke("tasks", "run", "t", "--param", param, *wait)
        assert_refused(result, 1, f"Error: task 't': {shown}; nothing was queued")
        assert dump_db(db_path) == configured  # no run, no decision


def test_tasks_run_checks_a_referenced_webhook_before_queuing(applied, db_path):
    applied("""
        webhooks:
          hook: {url: "http://127.0.0.1:9/hook"}
        tasks:
          notify: {action: webhook.send, with: {webhook: hook}}
    """)
    before = dump_db(db_path)
    result = invoke("tasks", "run", "notify", "--param", "webhook=nope")
    assert_refused(result, 1, "Error: task 'notify': parameter webhook: no webhook named 'nope'; "
                              "see 'taskengine webhooks list'; nothing was queued")
    assert dump_db(db_path) == before
    queued = invoke("tasks", "run", "notify", "--param", "webhook=hook", "--no-wait")
    assert queued.exit_code == 0, queued.output


def test_tasks_run_with_good_params_still_runs(configured, db_path):
    result = invoke("tasks", "run", "t", "--param", "argv=[echo, ok]", "--param", "timeout=3", "--json")
    assert result.exit_code == 1  # [echo, ok] is not JSON: a string, refused
    assert "parameter argv: expected a list" in result.stderr
    result = invoke("tasks", "run", "t", "--param", 'argv=["echo", "{{ run.trigger }}"]', "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["output"]["stdout"] == "manual\n"
