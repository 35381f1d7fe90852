"""``taskengine webhooks test | deliveries | delivery | redeliver | enable`` against real servers."""

from __future__ import annotations

import json

from tests.test_webhook_support import (  # noqa: F401 (fixtures)
    FAST, attempts, deliveries, engine, new_secret, query, queue_run, receiver, Reply, verify,
    wait_status, webhook_rules)


def test_test_command_sends_now_and_prints_outcome(applied, receiver, run_cli, db_path, monkeypatch):
    secret = new_secret()
    monkeypatch.setenv("WH_SECRET", secret)
    server = receiver()
    applied(webhook_rules(server.url, extra='    secret: "${env:WH_SECRET}"'))
    result = run_cli("webhooks", "test", "hook")
    assert result.exit_code == 0, result.output + result.stderr
    assert result.stdout.startswith("delivered: HTTP 200 in ")
    req = server.requests[0]
    body = verify(secret, req)
    assert body["type"] == "taskengine.test" and body["webhook"] == "hook"
    row = deliveries(db_path)[0]
    assert row["status"] == "delivered" and row["type"] == "taskengine.test" and row["max_attempts"] == 1


def test_test_command_failure_exits_1(applied, receiver, run_cli, db_path):
    server = receiver([Reply(500, b"nope")])
    applied(webhook_rules(server.url))
    result = run_cli("webhooks", "test", "hook", "--json")
    assert result.exit_code == 1
    out = json.loads(result.stdout)
    assert out["outcome"] == "failed" and out["status_code"] == 500 and out["status"] == "exhausted"
    assert out["response_excerpt"] == "nope" and len(server.requests) == 1


def test_test_command_unknown_webhook(applied, run_cli):
    applied(webhook_rules("http://127.0.0.1:9/x"))
    result = run_cli("webhooks", "test", "nope")
    assert result.exit_code == 1 and "no webhook named 'nope'" in result.stderr


def test_test_command_when_plugin_blocked(applied, run_cli, monkeypatch):
    applied(webhook_rules("http://127.0.0.1:9/x"))
    monkeypatch.setenv("TASKENGINE_DISABLE_PLUGINS", "webhook")
    result = run_cli("webhooks", "test", "hook")
    assert result.exit_code == 1 and "webhook plugin is not loaded" in result.stderr


def test_deliveries_listing_filters_and_json(applied, engine, receiver, run_cli, db_path):
    good = receiver()
    bad = receiver([Reply(500)])
    applied(f"""
{FAST}
webhooks:
  good: {{url: "{good.url}"}}
  bad: {{url: "{bad.url}", retries: 0}}
tasks:
  to-good: {{action: webhook.send, with: {{webhook: good}}}}
  to-bad: {{action: webhook.send, with: {{webhook: bad}}}}
""")
    e = engine()
    ok_id = f"msg_{queue_run(e, 'to-good')}"
    bad_id = f"msg_{queue_run(e, 'to-bad')}"
    wait_status(db_path, ok_id, "delivered")
    wait_status(db_path, bad_id, "exhausted")
    table = run_cli("webhooks", "deliveries")
    assert table.exit_code == 0
    assert table.stdout.splitlines()[0].split()[:5] == ["ID", "WEBHOOK", "STATUS", "TYPE", "ATTEMPTS"]
    assert ok_id in table.stdout and bad_id in table.stdout and "1/1" in table.stdout
    only_bad = json.loads(run_cli("webhooks", "deliveries", "bad", "--json").stdout)
    assert [r["id"] for r in only_bad] == [bad_id]
    assert only_bad[0]["last_status_code"] == 500 and only_bad[0]["last_error"].startswith("HTTP 500")
    delivered = json.loads(run_cli("webhooks", "deliveries", "--status", "delivered", "--json").stdout)
    assert [r["id"] for r in delivered] == [ok_id]
    none = run_cli("webhooks", "deliveries", "--status", "pending")
    assert none.exit_code == 0 and none.stdout == "" and "no deliveries match" in none.stderr
    shown = run_cli("webhooks", "delivery", bad_id)
    assert "attempt 1: failed  HTTP 500" in shown.stdout
    detail = json.loads(run_cli("webhooks", "delivery", bad_id, "--json").stdout)
    assert detail["attempt_log"][0]["status_code"] == 500
    assert run_cli("webhooks", "delivery", "msg_nope").exit_code == 1


def test_redeliver_keeps_webhook_id(applied, engine, receiver, run_cli, db_path, monkeypatch):
    secret = new_secret()
    monkeypatch.setenv("WH_SECRET", secret)
    server = receiver([Reply(500), Reply(200)])
    applied(webhook_rules(server.url, extra='    secret: "${env:WH_SECRET}"\n    retries: 0'))
    e = engine()
    delivery_id = f"msg_{queue_run(e, 'notify')}"
    wait_status(db_path, delivery_id, "exhausted")
    e.stop(grace=5)
    result = run_cli("webhooks", "redeliver", delivery_id)
    assert result.exit_code == 0, result.output + result.stderr
    assert result.stdout.startswith("delivered: HTTP 200")
    assert [r.headers["webhook-id"] for r in server.requests] == [delivery_id, delivery_id]
    for r in server.requests:
        verify(secret, r)
    assert server.requests[0].headers["webhook-timestamp"] <= server.requests[1].headers["webhook-timestamp"]
    assert server.requests[0].body == server.requests[1].body
    row = deliveries(db_path, id=delivery_id)[0]
    assert row["status"] == "delivered" and row["attempts"] == 2
    assert [a["number"] for a in attempts(db_path, delivery_id)] == [1, 2]


def test_redeliver_refuses_disabled_destination(applied, receiver, run_cli, db_path):
    server = receiver([Reply(410)])
    applied(webhook_rules(server.url))
    result = run_cli("webhooks", "test", "hook")
    assert result.exit_code == 1 and "disabled" in result.stdout
    delivery_id = deliveries(db_path)[0]["id"]
    listed = json.loads(run_cli("webhooks", "list", "--json").stdout)
    assert listed[0]["enabled"] is False
    refused = run_cli("webhooks", "redeliver", delivery_id)
    assert refused.exit_code == 1 and "webhooks enable hook" in refused.stderr
    assert run_cli("webhooks", "enable", "hook").exit_code == 0
    assert json.loads(run_cli("webhooks", "list", "--json").stdout)[0]["enabled"] is True
    assert query(db_path, "SELECT action FROM audit WHERE kind = 'webhook' ORDER BY id")[1:] == [{"action": "disabled"}, {"action": "enabled"}]


def test_enable_unknown_webhook(applied, run_cli):
    applied(webhook_rules("http://127.0.0.1:9/x"))
    result = run_cli("webhooks", "enable", "nope")
    assert result.exit_code == 1 and "no webhook named 'nope'" in result.stderr


def test_test_deliveries_delivery_and_redeliver_on_each_backend(db_target, write_rules, receiver, run_cli):
    """The webhook commands with ``--db`` naming an SQLite file, then a PostgreSQL database."""
    server = receiver()
    rules = write_rules(webhook_rules(server.url))
    applied = run_cli("--db", db_target, "apply", rules)
    assert applied.exit_code == 0, applied.output + applied.stderr
    sent = run_cli("--db", db_target, "webhooks", "test", "hook", "--json")
    assert sent.exit_code == 0, sent.output + sent.stderr
    delivery_id = json.loads(sent.stdout)["delivery_id"]
    listed = json.loads(run_cli("--db", db_target, "webhooks", "deliveries", "hook", "--json").stdout)
    assert [(r["id"], r["status"], r["attempts"]) for r in listed] == [(delivery_id, "delivered", 1)]
    again = run_cli("--db", db_target, "webhooks", "redeliver", delivery_id, "--json")
    assert again.exit_code == 0 and json.loads(again.stdout)["attempt"] == 2
    shown = json.loads(run_cli("--db", db_target, "webhooks", "delivery", delivery_id, "--json").stdout)
    assert [(a["number"], a["status_code"]) for a in shown["attempt_log"]] == [(1, 200), (2, 200)]
    assert [r.headers["webhook-id"] for r in server.requests] == [delivery_id, delivery_id]
