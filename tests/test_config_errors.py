"""Configuration errors (a missing secret, a bad template variable, parameters that render
invalid) fail at once, flagged for attention, naming what to set; they are not retried as if
the receiver were down."""

from __future__ import annotations

import json
import sqlite3

import pytest

from taskengine_core.engine import Engine
from taskengine_core.errors import SecretError
from taskengine_core.hookspecs import hookimpl
from taskengine_core.plugins import get_plugin_manager
from tests.test_webhook_support import (  # noqa: F401 (fixtures)
    FAST, engine, receiver, wait_status, wait_until, webhook_rules)

MISSING = "TASKENGINE_TEST_NEVER_SET"


def rows(db_path, sql: str, params=()) -> list[dict]:
    conn = sqlite3.connect(db_path)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute(sql, params)]
    finally:
        conn.close()


def run_once(db_path, manager=None) -> dict:
    engine = Engine(db_path, manager=manager)
    engine.executor.start()
    try:
        run_id = engine.queue_run("t")
        engine.execute(run_id, timeout=30)
    finally:
        engine.executor.stop(0)
    (run,) = rows(db_path, "SELECT * FROM runs WHERE id = ?", (run_id,))
    run["attempts"] = rows(db_path, "SELECT number, outcome FROM attempts WHERE run_id = ?", (run_id,))
    return run


RETRIED = "retry: {attempts: 6, backoff: 0.01}"


@pytest.mark.parametrize("with_, error", [
    (f'{{argv: [echo, x], env: {{T: "${{env:{MISSING}}}"}}}}',
     f"task 't': secret reference ${{env:{MISSING}}}: environment variable {MISSING} is not set; "
     f"set {MISSING} in the environment the engine runs in"),
    ('{argv: [echo, "{{ run.nope }}"]}',
     "task 't': template at argv[1]: 'run' has no attribute 'nope' (it has: attempt, id, schedule, slot, "
     "task, trigger)"),
    ('{argv: [echo, x], timeout: "{{ run.attempt - 10 }}"}',
     "task 't': parameters invalid after rendering: with.timeout: expected a number more than 0, got an integer -9"),
], ids=["missing-secret", "bad-template-variable", "invalid-after-rendering"])
def test_a_configuration_error_fails_at_once_with_attention(applied, db_path, monkeypatch, with_, error):
    monkeypatch.delenv(MISSING, raising=False)
    applied(f"tasks:\n  t: {{action: command.run, with: {with_}, {RETRIED}}}\n")
    run = run_once(db_path)
    assert (run["status"], run["attention"], run["attempt"]) == ("failed", 1, 1)
    assert run["attempts"] == [{"number": 1, "outcome": "failed"}]  # six allowed, one made
    assert run["error"] == error


def test_a_missing_smtp_password_fails_at_once_naming_the_variable(applied, db_path, monkeypatch):
    monkeypatch.delenv(MISSING, raising=False)
    applied(f"""
        settings:
          email: {{host: 127.0.0.1, port: 9, username: ops, password: "${{env:{MISSING}}}", sender: a@example.com}}
        tasks:
          t: {{action: email.send, with: {{to: b@example.com, subject: s, text: t}}, {RETRIED}}}
    """)
    run = run_once(db_path)
    assert (run["status"], run["attention"], len(run["attempts"])) == ("failed", 1, 1)
    assert f"environment variable {MISSING} is not set; set {MISSING} in the environment" in run["error"]


class _ResolvesItsOwnSecret:
    """An action that resolves a secret itself, as a third-party plugin may."""

    @hookimpl
    def register_actions(self, register):
        def act(params, ctx):
            raise SecretError(f"secret reference ${{env:{MISSING}}}: environment variable {MISSING} is not set")

        register("selfish.act", act, schema={"type": "object"})


def test_a_secret_error_raised_by_an_action_is_not_retried(applied, db_path):
    manager = get_plugin_manager(extra_plugins=[_ResolvesItsOwnSecret()])
    applied(f"tasks:\n  t: {{action: selfish.act, {RETRIED}}}\n", manager=manager)
    run = run_once(db_path, manager)
    assert (run["status"], run["attention"], len(run["attempts"])) == ("failed", 1, 1)
    assert run["error"] == f"task 't': secret reference ${{env:{MISSING}}}: environment variable {MISSING} is not set"


def test_a_webhook_with_a_missing_secret_fails_its_delivery_at_once(applied, engine, receiver, db_path,
                                                                    monkeypatch, run_cli):
    monkeypatch.delenv(MISSING, raising=False)
    server = receiver()
    applied(webhook_rules(server.url, extra=f'    retries: 5\n    auth: {{type: bearer, token: "${{env:{MISSING}}}"}}'))
    e = engine()
    run_id = e.queue_run("notify")
    wait_until(lambda: rows(db_path, "SELECT 1 FROM webhook_deliveries WHERE run_id = ?", (run_id,)))
    (delivery,) = rows(db_path, "SELECT id FROM webhook_deliveries")
    row = wait_status(db_path, delivery["id"], "failed")
    assert row["attempts"] == 1 and server.requests == []  # was: six attempts, as if the receiver were down
    assert row["last_error"] == (
        f"secret reference ${{env:{MISSING}}}: environment variable {MISSING} is not set; set {MISSING} in "
        f"the environment the engine runs in; not retried: fix it, then 'taskengine webhooks redeliver "
        f"{delivery['id']}'")
    wait_until(lambda: rows(db_path, "SELECT 1 FROM events WHERE type = 'webhook.failed'"), what="webhook.failed")
    monkeypatch.setenv(MISSING, "now-it-is-set")
    assert run_cli("webhooks", "redeliver", delivery["id"]).exit_code == 0
    server.wait_for(1)
    assert server.requests[0].headers["Authorization"] == "Bearer now-it-is-set"
    assert json.dumps(rows(db_path, "SELECT * FROM webhook_attempts")).count("now-it-is-set") == 0
