"""`taskengine apply`: diff against the database, one transaction, audit rows, idempotent."""

from __future__ import annotations

import json
import os
import sqlite3

from tests.conftest import dump_db

RULES = """
settings:
  timezone: UTC
  example_secret_holder: null
schedules:
  nightly: {cron: "0 2 * * *"}
tasks:
  backup:
    action: command.run
    with: {argv: [echo, backup], env: {TOKEN: "${env:BACKUP_TOKEN}"}}
    schedules: [nightly]
  greet:
    action: command.run
    with: {argv: [echo, hi]}
events:
  login: {on: user.login, tasks: [greet]}
""".replace("  example_secret_holder: null\n", "")


def test_apply_creates_then_changes_nothing(run_cli, write_rules, db_path):
    path = write_rules(RULES)
    first = run_cli("apply", path)
    assert first.exit_code == 0, first.output
    assert first.stdout.splitlines() == [
        "created schedule nightly", "created event login", "created task backup",
        "created task greet", "created setting timezone",
    ]
    assert first.stderr == "5 created, 0 updated, 0 deleted\n"
    before = dump_db(db_path)
    second = run_cli("apply", path)
    assert second.stdout == ""
    assert second.stderr == "no changes: the database already matches the rule files\n"
    assert dump_db(db_path) == before


def test_apply_updates_and_deletes_with_audit(run_cli, write_rules, db_path):
    path = write_rules(RULES)
    run_cli("apply", path)
    path.write_text(path.read_text().replace("with: {argv: [echo, hi]}", "with: {argv: [echo, hello]}\n    timeout: 5s")
                    .replace("  login: {on: user.login, tasks: [greet]}\n", ""))
    result = run_cli("apply", path)
    assert result.stdout.splitlines() == ["deleted event login", "updated task greet (timeout, with)"]
    conn = sqlite3.connect(db_path)
    rows = conn.execute("SELECT action, kind, name, changes, actor FROM audit ORDER BY id").fetchall()
    assert [r[:3] for r in rows[-2:]] == [("deleted", "event", "login"), ("updated", "task", "greet")]
    changes = json.loads(rows[-1][3])
    assert changes == {"timeout": {"to": "5s"},
                       "with": {"from": {"argv": ["echo", "hi"]}, "to": {"argv": ["echo", "hello"]}}}
    assert rows[-1][4]  # the OS user
    assert conn.execute("SELECT count(*) FROM task_events").fetchone()[0] == 0


def test_links_are_stored(run_cli, write_rules, db_path):
    run_cli("apply", write_rules(RULES))
    conn = sqlite3.connect(db_path)
    assert conn.execute("SELECT task, schedule FROM task_schedules").fetchall() == [("backup", "nightly")]
    assert conn.execute("SELECT task, event_rule FROM task_events").fetchall() == [("greet", "login")]


def test_dry_run_writes_nothing(run_cli, write_rules, db_path):
    path = write_rules(RULES)
    run_cli("apply", path)
    before = dump_db(db_path)
    path.write_text(path.read_text().replace("echo, hi", "echo, bye"))
    result = run_cli("apply", "--dry-run", path)
    assert result.stdout == "would update task greet (with)\n"
    assert result.stderr == "dry run, nothing written: 0 created, 1 updated, 0 deleted\n"
    assert dump_db(db_path) == before


def test_a_bad_file_changes_nothing(run_cli, write_rules, db_path):
    good = write_rules(RULES)
    run_cli("apply", good)
    before = dump_db(db_path)
    bad = write_rules(RULES.replace("tasks: [greet]", "tasks: [gret]"), "other.yaml")
    good.unlink()
    result = run_cli("apply", bad)
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0].endswith(
        "events.login.tasks[0]  event rule 'login' refers to task 'gret', which is not defined; "
        "did you mean 'greet'?")
    assert dump_db(db_path) == before


def test_secrets_are_stored_as_references_never_resolved(run_cli, write_rules, db_path, monkeypatch):
    monkeypatch.setenv("BACKUP_TOKEN", "canary-5f2e9d")
    result = run_cli("apply", write_rules(RULES))
    assert result.exit_code == 0, result.output
    raw = db_path.read_bytes() + (db_path.with_name(db_path.name + "-wal").read_bytes()
                                  if os.path.exists(str(db_path) + "-wal") else b"")
    assert b"canary-5f2e9d" not in raw
    assert b"${env:BACKUP_TOKEN}" in raw


def test_a_literal_secret_is_refused_and_nothing_is_stored(run_cli, write_rules, db_path):
    rules = RULES + "webhooks:\n  ops: {url: 'https://example.invalid/h', auth: {type: bearer, token: literal-canary-77}}\n"
    path = write_rules(rules)
    result = run_cli("apply", path)
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0] == (
        f"{path}:16:64  webhooks.ops.auth.token  a secret must be a reference such as ${{env:NAME}} or "
        "${file:PATH}, not a literal value: a literal would be stored in the database")
    assert "literal-canary-77" not in result.output
    assert not db_path.exists() or b"literal-canary-77" not in db_path.read_bytes()


def test_a_literal_under_a_secret_looking_env_name_is_refused(run_cli, write_rules, db_path):
    path = write_rules("""
        tasks:
          t: {action: command.run, with: {argv: [env], env: {DB_PASSWORD: hunter2-canary, DB_USER: ops}}}
    """)
    result = run_cli("apply", path)
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0] == (
        f"{path}:2:54  tasks.t.with.env.DB_PASSWORD  a secret must be a reference such as ${{env:NAME}} or "
        "${file:PATH}, not a literal value: a literal would be stored in the database")
    assert not db_path.exists() or b"hunter2-canary" not in db_path.read_bytes()


def test_apply_to_a_read_only_database(run_cli, write_rules, db_path):
    run_cli("apply", write_rules(RULES))
    before = dump_db(db_path)
    os.chmod(db_path, 0o444)
    try:
        result = run_cli("apply", write_rules(RULES.replace("echo, hi", "echo, x"), "rules.yaml"))
    finally:
        os.chmod(db_path, 0o644)
    assert result.exit_code == 1
    assert result.stderr == (f"Error: database {db_path} is read-only: nothing was changed. Make the file "
                             "writable or pass another path with --db\n")
    assert dump_db(db_path) == before


def test_missing_database_directory(run_cli, write_rules, tmp_path):
    target = tmp_path / "missing" / "te.db"
    result = run_cli("--db", target, "apply", write_rules(RULES))
    assert result.exit_code == 1
    assert result.stderr == (f"Error: database directory {target.parent} does not exist: create it, or "
                             "pass another path with --db or TASKENGINE_DB\n")
    assert not target.parent.exists()


def test_a_cli_toggle_outlives_an_apply_until_the_file_changes_enabled(run_cli, write_rules):
    """`tasks disable` is not undone by an apply that changes other fields (it used to be); an
    apply that changes the file's own `enabled` wins."""
    def state():
        return {t["name"]: t["state"] for t in json.loads(run_cli("tasks", "list", "--json").stdout)}

    rules = "tasks:\n  t: {{action: command.run, with: {{argv: [echo]}}, timeout: {timeout}{extra}}}\n"
    run_cli("apply", write_rules(rules.format(timeout=5, extra="")))
    run_cli("tasks", "disable", "t")
    assert run_cli("apply", write_rules(rules.format(timeout=6, extra=""))).stdout == "updated task t (timeout)\n"
    assert state() == {"t": "disabled"}
    run_cli("apply", write_rules(rules.format(timeout=6, extra=", enabled: false")))
    run_cli("tasks", "enable", "t")
    run_cli("apply", write_rules(rules.format(timeout=7, extra=", enabled: false")))
    assert state() == {"t": "enabled"}  # the file still says false, as before: the toggle stands
    run_cli("apply", write_rules(rules.format(timeout=7, extra="")))
    assert state() == {"t": "enabled"}
    run_cli("tasks", "disable", "t")
    run_cli("apply", write_rules(rules.format(timeout=7, extra=", enabled: true")))
    assert state() == {"t": "disabled"}  # `enabled: true` is what an absent key meant
    run_cli("apply", write_rules(rules.format(timeout=7, extra=", enabled: false")))
    run_cli("tasks", "enable", "t")
    run_cli("apply", write_rules(rules.format(timeout=7, extra=", enabled: true")))
    assert state() == {"t": "enabled"}
    run_cli("apply", write_rules(rules.format(timeout=7, extra=", enabled: false")))
    assert state() == {"t": "disabled"}  # the file's `enabled` changed: the file wins
