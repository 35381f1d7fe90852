"""Every command through CliRunner: output shape, --json, exit codes, stdout vs stderr."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from taskengine_core import __version__

RULES = """
settings: {timezone: Europe/Berlin}
schedules:
  nightly: {cron: "0 2 * * *"}
tasks:
  backup: {action: command.run, with: {argv: [echo, backup]}, schedules: [nightly]}
  greet: {action: command.run, with: {argv: [echo, "hi {{ event.data.user }}"]}}
events:
  login: {on: user.login, tasks: [greet]}
"""


@pytest.fixture
def loaded(run_cli, write_rules):
    result = run_cli("apply", write_rules(RULES))
    assert result.exit_code == 0, result.output
    return run_cli


def test_version_lists_core_and_plugins(run_cli):
    out = run_cli("--version").stdout.splitlines()
    assert out[0] == f"taskengine-core {__version__}"  # the distribution's name, as on PyPI
    assert any(line.strip() == f"plugin command: taskengine-core {__version__}" for line in out)


def test_version_reads_package_metadata_and_imports_no_plugin():
    import subprocess
    import sys

    probe = ("import sys\nfrom taskengine_core.cli import main\nsys.argv = ['taskengine', '--version']\n"
             "try:\n    main()\nexcept SystemExit:\n    pass\n"
             "print([m for m in ('taskengine_command', 'taskengine_email', 'taskengine_webhook') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert "plugin email: taskengine-core " in out
    assert out.splitlines()[-1] == "[]"


def test_help_lists_every_command(run_cli):
    out = run_cli("--help").stdout
    for command in ("apply", "audit", "emit", "events", "logs", "plugins", "run", "schedules",
                    "schema", "tasks", "validate", "webhooks"):
        assert f"  {command} " in out


def test_schema_is_json_schema_with_plugin_parameters(run_cli):
    schema = json.loads(run_cli("schema").stdout)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    task = schema["properties"]["tasks"]["additionalProperties"]
    assert "command.run" in task["properties"]["action"]["enum"]
    branches = {b["if"]["properties"]["action"]["const"]: b for b in task["allOf"]}
    assert "argv" in json.dumps(branches["command.run"]["then"])
    from jsonschema import Draft202012Validator

    Draft202012Validator.check_schema(schema)


def test_schema_validates_a_rule_file(run_cli):
    import yaml
    from jsonschema import Draft202012Validator

    schema = json.loads(run_cli("schema").stdout)
    errors = list(Draft202012Validator(schema).iter_errors(yaml.safe_load(RULES.replace("on: user", "'on': user"))))
    assert errors == []


def test_listings_in_tables_and_json(loaded):
    tasks = loaded("tasks").stdout.splitlines()
    assert tasks[0].split() == ["NAME", "ACTION", "STATE", "SCHEDULES", "EVENTS", "WEBHOOKS"]
    assert tasks[1].split() == ["backup", "command.run", "enabled", "nightly"]
    as_json = json.loads(loaded("tasks", "list", "--json").stdout)
    assert [t["name"] for t in as_json] == ["backup", "greet"]
    assert as_json[1]["events"] == ["login"]
    shown = json.loads(loaded("tasks", "show", "greet", "--json").stdout)
    assert shown["spec"]["with"]["argv"] == ["echo", "hi {{ event.data.user }}"]
    assert "action       command.run" in loaded("tasks", "show", "greet").stdout
    schedules = json.loads(loaded("schedules", "list", "--json").stdout)
    assert schedules[0]["name"] == "nightly" and schedules[0]["tasks"] == ["backup"]
    assert schedules[0]["timezone"] == "Europe/Berlin" and schedules[0]["next_utc"].endswith("Z")
    events = json.loads(loaded("events", "--json").stdout)
    assert events[0]["on"] == "user.login" and events[0]["tasks"] == ["greet"]
    assert json.loads(loaded("webhooks", "list", "--json").stdout) == []
    audit = json.loads(loaded("audit", "list", "--json").stdout)
    assert {a["action"] for a in audit} == {"created"}


def test_empty_listings_say_so_on_stderr(run_cli, write_rules):
    # A read never creates the database (see tests/test_db_safety.py): apply one without tasks.
    assert run_cli("apply", write_rules("schedules:\n  nightly: {cron: '0 2 * * *'}\n")).exit_code == 0
    result = run_cli("tasks", "list")
    assert result.stdout == ""
    assert result.stderr == "no tasks: define some in a rule file and run 'taskengine apply'\n"


def test_schedules_next_is_deterministic(loaded):
    out = loaded("schedules", "next", "nightly", "--count", "2", "--after", "2026-03-28T12:00Z").stdout
    # 02:00 does not exist in Berlin on 2026-03-29: the slot fires right after the gap
    assert out.splitlines() == ["2026-03-29T03:00:00+02:00  (2026-03-29T01:00:00Z)",
                                "2026-03-30T02:00:00+02:00  (2026-03-30T00:00:00Z)"]
    bad = loaded("schedules", "next", "nightly", "--after", "tomorrow")
    assert bad.exit_code == 2 and "--after 'tomorrow': expected an ISO date-time" in bad.stderr
    missing = loaded("schedules", "next", "nope")
    assert missing.exit_code == 1
    assert missing.stderr == "Error: no schedule named 'nope'; see 'taskengine schedules list'\n"


def test_enable_disable_are_audited(loaded):
    assert loaded("schedules", "disable", "nightly").stderr == "schedule nightly disabled\n"
    assert loaded("schedules", "disable", "nightly").stderr == "schedule nightly was already disabled\n"
    assert loaded("schedules", "enable", "nightly").stderr == "schedule nightly enabled\n"
    actions = [a["action"] for a in json.loads(loaded("audit", "--json").stdout)][:2]
    assert actions == ["enabled", "disabled"]
    missing = loaded("tasks", "disable", "nope")
    assert missing.exit_code == 1 and missing.stderr == "Error: no task named 'nope'; see 'taskengine tasks list'\n"


def test_logs_commands(loaded, db_path):
    from taskengine_core.engine import Engine

    event_id = loaded("emit", "user.login", "user=ann").stdout.strip()
    engine = Engine(db_path)
    engine.executor.start()
    engine.run_until_idle()
    engine.executor.stop(0)
    (run,) = json.loads(loaded("logs", "list", "--json", "--task", "greet").stdout)
    assert run["status"] == "succeeded"
    assert json.loads(loaded("logs", "list", "--json", "--status", "failed").stdout) == []
    assert len(json.loads(loaded("logs", "list", "--json", "--since", "1h").stdout)) == 1
    assert json.loads(loaded("logs", "--json").stdout)[0]["id"] == run["id"]
    shown = json.loads(loaded("logs", "show", run["id"], "--json").stdout)
    assert shown["event"]["data"] == {"user": "ann"} and shown["attempts"][0]["outcome"] == "succeeded"
    explained = json.loads(loaded("logs", "explain", event_id, "--json").stdout)
    assert explained["decisions"][0]["decision"] == "matched"
    assert explained["rules_now"] == [{"rule": "login", "matched": True, "reason": "matched (tasks greet: enabled)"}]
    bad_since = loaded("logs", "list", "--since", "soon")
    assert bad_since.exit_code == 2 and "--since: not a duration: 'soon'" in bad_since.stderr
    too_long = loaded("logs", "prune", "--older-than", "99999999999999d")
    assert too_long.exit_code == 2
    assert "--older-than: duration too long: '99999999999999d'; at most 36500d (100 years)" in too_long.stderr
    assert loaded("logs", "show", "nope").stderr == "Error: no run with id 'nope'; see 'taskengine logs list'\n"


def test_logs_prune_keeps_unfinished_runs(loaded, db_path):
    conn = sqlite3.connect(db_path)
    old = "2020-01-01T00:00:00.000000Z"
    for run_id, status in (("old-done", "succeeded"), ("old-pending", "pending"), ("old-running", "running")):
        conn.execute("INSERT INTO runs (id, task, status, trigger, not_before, created_at, finished_at) "
                     "VALUES (?, 'greet', ?, 'manual', ?, ?, ?)", (run_id, status, old, old,
                                                                   old if status == "succeeded" else None))
    conn.execute("INSERT INTO events (id, type, source, data, time, received_at, processed_at) "
                 "VALUES ('old-event', 'x', 'cli', '{}', ?, ?, ?)", (old, old, old))
    conn.commit()
    result = loaded("logs", "prune", "--older-than", "90d")
    assert result.stderr == "pruned 1 runs and 1 events\n"
    left = {r[0] for r in conn.execute("SELECT id FROM runs")}
    assert left == {"old-pending", "old-running"}


def test_run_refuses_a_public_address_without_a_token(loaded):
    result = loaded("run", "--listen", "0.0.0.0:0")
    assert result.exit_code == 1
    assert ("Error: refusing to listen on 0.0.0.0 without a token: set TASKENGINE_INGRESS_TOKEN or "
            "settings.ingress.token, or listen on 127.0.0.1") in result.stderr


def _engine_process(db_path, *args):
    env = {**os.environ, "TASKENGINE_DB": str(db_path)}
    return subprocess.Popen([sys.executable, "-m", "taskengine_core", "run", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(predicate, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("grace, expected", [("10", "succeeded"), ("0.2", "interrupted")])
def test_sigterm_lets_in_flight_runs_finish_within_the_grace(run_cli, write_rules, db_path, grace, expected,
                                                            tmp_path):
    pidfile = tmp_path / "pid"
    run_cli("apply", write_rules(f"""
        tasks:
          slow: {{action: command.run, with: {{shell: "echo $$ > {pidfile}; exec sleep 1.5"}}}}
        events:
          go: {{on: go, tasks: [slow]}}
    """))
    proc = _engine_process(db_path, "--grace", grace)
    run_cli("emit", "go")
    conn = sqlite3.connect(db_path)
    assert _wait_for(lambda: conn.execute("SELECT 1 FROM runs WHERE status = 'running'").fetchone())
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert f"stopping: in-flight runs get {grace}s to finish" in err and err.rstrip().endswith("stopped")
    (status, error) = conn.execute("SELECT status, error FROM runs").fetchone()
    assert status == expected
    if expected == "interrupted":
        assert error == "interrupted: the engine stopped before the run finished; not re-run (not idempotent)"
        assert "finished after it was marked interrupted at stop (cancelled)" in err
    with pytest.raises(ProcessLookupError):  # a cut-off command does not outlive the engine
        os.kill(int(pidfile.read_text()), 0)


def test_graph_in_mermaid_and_dot(loaded):
    mermaid = loaded("graph").stdout.splitlines()
    assert mermaid[0] == "flowchart LR"
    assert '  schedule_nightly(["schedule: nightly"])' in mermaid
    assert "  schedule_nightly --> task_backup" in mermaid and "  event_login --> task_greet" in mermaid
    dot = loaded("graph", "--format", "dot").stdout
    assert dot.startswith("digraph taskengine {") and "  event_login -> task_greet;" in dot


def test_install_and_uninstall_a_plugin_with_pip(tmp_path):
    """A real pip install into a throwaway virtual environment that sees this one's packages
    (tests/venvs.py), offline: pip is isolated from user configuration, has no index, and builds
    with the setuptools already installed. Options pip knows and click does not pass through."""
    import shutil
    from pathlib import Path

    from tests.venvs import make_venv

    python = make_venv(tmp_path / "venv")
    plugin = shutil.copytree(Path(__file__).parent / "fixtures" / "example_plugin", tmp_path / "example")
    offline = ("--isolated", "--no-index", "--no-build-isolation", "--quiet")

    def taskengine(*args):
        return subprocess.run([str(python), "-m", "taskengine_core", *args],
                              capture_output=True, text=True, cwd=tmp_path)

    def listed():
        return {p["name"]: p for p in json.loads(taskengine("plugins", "--json").stdout)}

    installed = taskengine("install", *offline, str(plugin))
    assert installed.returncode == 0, installed.stderr
    assert listed()["example"]["distribution"] == "taskengine-example"
    removed = taskengine("uninstall", "--isolated", "--yes", "taskengine-example")
    assert removed.returncode == 0, removed.stderr
    assert "example" not in listed()

    # -e PATH: an editable install from a source folder, as docs/plugins.md says
    editable = taskengine("install", *offline, "-e", str(plugin))
    assert editable.returncode == 0, editable.stderr
    assert listed()["example"]["version"] == "1.2.3"
    assert taskengine("uninstall", "--isolated", "--yes", "taskengine-example").returncode == 0
    assert "example" not in listed()


def test_install_without_a_package_is_a_usage_error(run_cli):
    result = run_cli("install", "-U")
    assert result.exit_code == 2
    assert "name a package to install, or a source folder with -e PATH" in result.stderr
