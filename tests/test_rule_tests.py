"""`taskengine rules test CASES.yaml` (offline rule tests) and `taskengine tasks run --dry-run`:
the real loader, evaluator and templates decide; no action runs and the database is untouched."""

from __future__ import annotations

import json
import textwrap

import pytest

from tests.conftest import dump_db

RULES = """
settings: {timezone: Europe/Berlin}
schedules:
  nightly: {cron: "0 2 * * *"}
  weekly: {cron: "0 3 * * 1", enabled: false}
tasks:
  greet:
    action: command.run
    with: {argv: [echo, "hi {{ event.data.user }}"], env: {TOKEN: "${env:GREET_TOKEN}"}}
  backup: {action: command.run, with: {argv: [backup, "{{ run.schedule }}"]}, schedules: [nightly]}
  later: {action: command.run, with: {argv: [echo, later]}}
  off: {action: command.run, with: {argv: [echo, off]}, enabled: false}
events:
  login: {on: user.login, when: {data.user: alice}, tasks: [greet]}
  created: {on: user.created, delay: 30d, tasks: [later, off]}
"""


@pytest.fixture
def files(tmp_path):
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "site.yaml").write_text(textwrap.dedent(RULES).lstrip())

    def cases(text: str) -> str:
        path = tmp_path / "cases.yaml"
        path.write_text("rules: [rules]\ncases:\n" + textwrap.indent(textwrap.dedent(text).strip(), "  ") + "\n")
        return str(path)

    return cases


def test_rules_test_passes_matching_cases_and_writes_nothing(run_cli, files, db_path):
    cases = files("""
        - name: alice is greeted
          event: {type: user.login, data: {user: alice}}
          expect:
            - task: greet
              params: {argv: [echo, hi alice], env: {TOKEN: "${env:GREET_TOKEN}"}}
        - name: bob is not
          event: {type: user.login, data: {user: bob}}
          expect: []
        - name: a delay still fires; a disabled task does not
          event: {type: user.created, data: {}}
          expect: [later]
        - name: 02:00 Berlin time runs the backup with its schedule
          time: "2027-03-06T01:00:00Z"
          expect: [{task: backup, params: {argv: [backup, nightly]}}]
        - name: the disabled schedule's minute fires nothing
          time: "2027-03-08T03:00:00+01:00"
          expect: []
    """)
    result = run_cli("rules", "test", cases)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "ok    alice is greeted", "ok    bob is not", "ok    a delay still fires; a disabled task does not",
        "ok    02:00 Berlin time runs the backup with its schedule", "ok    the disabled schedule's minute fires nothing"]
    assert "5 of 5 cases passed" in result.stderr
    assert not db_path.exists() and dump_db(db_path) == []


def test_a_failing_case_exits_1_with_a_diff_and_why(run_cli, files):
    cases = files("""
        - name: bob should be greeted
          event: {type: user.login, data: {user: bob}}
          expect: [greet]
        - name: wrong parameters
          event: {type: user.login, data: {user: alice}}
          expect: [{task: greet, params: {argv: [echo, hi bob]}}]
    """)
    result = run_cli("rules", "test", cases)
    assert result.exit_code == 1
    out = result.stdout
    assert "FAIL  bob should be greeted" in out and '      -    "task": "greet"' in out
    assert "note: login: " in out  # why the rule did not fire
    assert '      -        "hi bob"' in out and '      +        "hi alice"' in out
    assert "0 of 2 cases passed; failed: bob should be greeted, wrong parameters" in result.stderr


def test_rules_test_json(run_cli, files):
    cases = files("""
        - event: {type: user.login, data: {user: alice}}
          expect: [greet]
    """)
    [case] = json.loads(run_cli("rules", "test", cases, "--json").stdout)
    assert case == {"name": "case 1", "passed": True, "expected": [{"task": "greet"}],
                    "actual": [{"task": "greet"}], "notes": []}


@pytest.mark.parametrize("case, message", [
    ("- {expect: []}", "case 1: give an event (type and data) or a time (for schedules)"),
    ("- {name: x, event: {data: {}}, expect: []}", "case 1 (x): event must be a mapping with a type"),
    ("- {event: {type: a}, expect: greet}", "case 1: expect must be a list of task names"),
    ("- {time: '2027-01-01 10:00', expect: []}", "case 1: time must be an ISO date-time with a zone offset"),
    ("- {event: {type: a}, expect: [], whenn: 1}", "case 1: unknown key 'whenn'"),
])
def test_a_bad_cases_file_is_a_usage_error_naming_the_case(run_cli, files, case, message):
    result = run_cli("rules", "test", files(case))
    assert result.exit_code == 2
    assert message in result.stderr


def test_rule_file_errors_are_reported_like_validate(run_cli, files, tmp_path):
    (tmp_path / "rules" / "bad.yaml").write_text("tasks:\n  x: {action: nope.nope}\n")
    result = run_cli("rules", "test", files("- {event: {type: a}, expect: []}"))
    assert result.exit_code == 1
    assert "bad.yaml:2:7  tasks.x.action  unknown action 'nope.nope'" in result.stderr


def test_tasks_run_dry_run_renders_and_runs_nothing(run_cli, write_rules, db_path, tmp_path):
    marker = tmp_path / "ran"
    run_cli("apply", write_rules(f"""
        tasks:
          touch:
            action: command.run
            with: {{argv: [touch, "{marker}-{{{{ event.data.user }}}}"], env: {{T: "${{env:SOME_SECRET}}"}}}}
    """))
    before = dump_db(db_path)
    event = json.dumps({"type": "user.login", "data": {"user": "alice"}})
    result = run_cli("tasks", "run", "touch", "--dry-run", "--event", event, "--json")
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert shown["params"] == {"argv": ["touch", f"{marker}-alice"], "env": {"T": "${env:SOME_SECRET}"}}
    assert shown["action"] == "command.run" and shown["dry_run"] is True
    assert "nothing was run and nothing was written" in result.stderr
    assert not list(tmp_path.glob("ran*")) and dump_db(db_path) == before
    text = run_cli("tasks", "run", "touch", "--dry-run", "--event", event).stdout
    assert text.startswith("dry run: task 'touch' would run action command.run from plugin command")


def test_tasks_run_dry_run_reports_what_would_fail(run_cli, write_rules):
    run_cli("apply", write_rules('tasks:\n  t: {action: command.run, with: {argv: [echo, "{{ event.data.user }}"]}}\n'))
    result = run_cli("tasks", "run", "t", "--dry-run")
    assert result.exit_code == 1
    assert "error: task 't': template at argv[1]: 'event' is none, so it has no 'data'" in result.stderr
    misuse = run_cli("tasks", "run", "t", "--event", '{"type": "a"}')
    assert misuse.exit_code == 2 and "--event JSON goes with --dry-run" in misuse.stderr
    bad = run_cli("tasks", "run", "t", "--dry-run", "--event", "{nope")
    assert bad.exit_code == 2 and "--event is not valid JSON" in bad.stderr
