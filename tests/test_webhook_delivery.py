"""Webhook deliveries through the real engine to real HTTP servers on 127.0.0.1."""

from __future__ import annotations

import base64
import json
from datetime import datetime, timezone

import pytest

from tests.test_webhook_support import (  # noqa: F401 (fixtures)
    FAST, attempts, deliveries, engine, new_secret, query, queue_run, receiver, Reply, verify,
    wait_status, wait_until, webhook_rules)


def send(engine_, task: str = "notify") -> str:
    run_id = queue_run(engine_, task)
    return f"msg_{run_id}"


# --- auth and signing -----------------------------------------------------------------------


@pytest.mark.parametrize("auth, check", [
    ("{type: none}", lambda h: "Authorization" not in h),
    ("{type: basic, username: ops, password: '${env:WH_PASS}'}",
     lambda h: h["Authorization"] == "Basic " + base64.b64encode(b"ops:pw-123").decode()),
    ("{type: bearer, token: '${env:WH_TOKEN}'}", lambda h: h["Authorization"] == "Bearer tok-456"),
    ("{type: apikey, header: X-Api-Key, key: '${env:WH_KEY}'}",
     lambda h: h["X-Api-Key"] == "key-789" and "Authorization" not in h),
], ids=["none", "basic", "bearer", "apikey"])
def test_auth_headers_and_signature(auth, check, applied, engine, receiver, monkeypatch):
    monkeypatch.setenv("WH_PASS", "pw-123")
    monkeypatch.setenv("WH_TOKEN", "tok-456")
    monkeypatch.setenv("WH_KEY", "key-789")
    secret = new_secret()
    monkeypatch.setenv("WH_SECRET", secret)
    server = receiver()
    applied(webhook_rules(server.url, extra=f"""    auth: {auth}
    secret: "${{env:WH_SECRET}}"
    headers: {{X-Team: ops}}"""))
    e = engine()
    delivery_id = send(e)
    req = server.wait_for(1)[0]
    assert check(req.headers)
    assert req.headers["X-Team"] == "ops"
    assert req.headers["webhook-id"] == delivery_id
    assert req.headers["Content-Type"] == "application/json"
    assert verify(secret, req)["task"] == "notify"
    row = wait_status(e.db_path, delivery_id, "delivered")
    stored = json.loads(attempts(e.db_path, delivery_id)[0]["request_headers"])
    for name in ("Authorization", "X-Api-Key"):
        if name in stored:
            assert stored[name] == "********"
    assert row["attempts"] == 1 and row["last_status_code"] == 200


def test_rotation_sends_two_signatures_each_verifies(applied, engine, receiver, monkeypatch):
    new, old = new_secret(), new_secret()
    monkeypatch.setenv("WH_SECRETS", f"{new} {old}")  # during a rotation: the new one, then the old
    server = receiver()
    applied(webhook_rules(server.url, extra='    secret: "${env:WH_SECRETS}"'))
    send(engine())
    req = server.wait_for(1)[0]
    assert len(req.headers["webhook-signature"].split()) == 2
    verify(new, req)
    verify(old, req)


# --- retries, status codes ------------------------------------------------------------------


def test_retry_500_500_200_one_id_three_valid_signatures(applied, engine, receiver, monkeypatch):
    secret = new_secret()
    monkeypatch.setenv("WH_SECRET", secret)
    server = receiver([Reply(500, b"boom"), Reply(500, b"boom"), Reply(200)])
    applied(webhook_rules(server.url, extra='    secret: "${env:WH_SECRET}"'))
    e = engine()
    delivery_id = send(e)
    reqs = server.wait_for(3)
    wait_status(e.db_path, delivery_id, "delivered")
    assert {r.headers["webhook-id"] for r in reqs} == {delivery_id}
    for r in reqs:
        verify(secret, r)
    assert reqs[0].body == reqs[1].body == reqs[2].body
    rows = attempts(e.db_path, delivery_id)
    assert [(a["number"], a["status_code"], a["outcome"]) for a in rows] == [
        (1, 500, "failed"), (2, 500, "failed"), (3, 200, "succeeded")]
    assert rows[0]["response_excerpt"] == "boom" and rows[0]["error"] == "HTTP 500 Internal Server Error"
    assert all(a["request_id"].startswith("req_") and a["duration"] >= 0 for a in rows)
    assert len({a["request_id"] for a in rows}) == 3
    assert rows[0]["address"] == f"127.0.0.1:{server.port}"
    assert rows[0]["next_attempt_at"] and rows[2]["next_attempt_at"] is None


def test_exhausted_emits_event(applied, engine, receiver):
    server = receiver([Reply(500)])
    applied(webhook_rules(server.url, extra="    retries: 2"))
    e = engine()
    delivery_id = send(e)
    row = wait_status(e.db_path, delivery_id, "exhausted")
    assert row["attempts"] == 3 and len(server.requests) == 3
    events = wait_until(lambda: query(e.db_path, "SELECT * FROM events WHERE type = 'webhook.exhausted'"))
    data = json.loads(events[0]["data"])
    assert data["delivery_id"] == delivery_id and data["attempts"] == 3 and data["status_code"] == 500
    assert events[0]["source"] == "webhook"


def test_redirect_is_not_followed(applied, engine, receiver):
    target = receiver()
    server = receiver([Reply(302, headers={"Location": target.url}), Reply(200)])
    applied(webhook_rules(server.url, extra="    retries: 1"))
    e = engine()
    delivery_id = send(e)
    wait_status(e.db_path, delivery_id, "delivered")
    first = attempts(e.db_path, delivery_id)[0]
    assert first["status_code"] == 302 and first["outcome"] == "failed"
    assert "not followed" in first["error"] and target.url in first["error"]
    assert target.requests == [] and target.connections == 0


def test_410_disables_destination_and_enable_resumes(applied, engine, receiver, run_cli):
    server = receiver([Reply(410, b"gone"), Reply(200)])
    applied(webhook_rules(server.url))
    e = engine()
    first = send(e)
    row = wait_status(e.db_path, first, "failed")
    assert "410" in row["last_error"] and row["attempts"] == 1
    assert query(e.db_path, "SELECT enabled FROM webhooks WHERE name = 'hook'")[0]["enabled"] == 0
    audit = query(e.db_path, "SELECT * FROM audit WHERE kind = 'webhook' AND action = 'disabled'")
    assert audit and "410" in audit[0]["changes"]
    # a new run on the disabled destination fails clearly and queues nothing
    run_id = queue_run(e, "notify")
    wait_until(lambda: query(e.db_path, "SELECT status FROM runs WHERE id = ?", (run_id,))[0]["status"] == "failed")
    assert "disabled" in query(e.db_path, "SELECT error FROM runs WHERE id = ?", (run_id,))[0]["error"]
    assert len(server.requests) == 1
    result = run_cli("webhooks", "enable", "hook")
    assert result.exit_code == 0 and "enabled" in result.stderr
    assert len(server.requests) == 1
    second = send(e)
    wait_status(e.db_path, second, "delivered")


def test_retry_after_honoured(applied, engine, receiver):
    server = receiver([Reply(503, headers={"Retry-After": "1"}), Reply(200)])
    applied(webhook_rules(server.url))
    e = engine()
    delivery_id = send(e)
    reqs = server.wait_for(2)
    wait_status(e.db_path, delivery_id, "delivered")
    assert reqs[1].time - reqs[0].time >= 0.95  # the backoff alone would be ~0.05 s


def test_retry_after_clamped_to_an_hour(applied, engine, receiver):
    server = receiver([Reply(429, headers={"Retry-After": "999999"})])
    applied(webhook_rules(server.url))
    e = engine()
    delivery_id = send(e)
    server.wait_for(1)
    row = wait_until(lambda: [r for r in deliveries(e.db_path, id=delivery_id) if r["attempts"] == 1
                              and r["status"] == "pending"])[0]
    def when(text: str) -> datetime:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))

    (attempt,) = attempts(e.db_path, delivery_id)
    due = when(row["next_attempt_at"])
    # clamped to an hour after the attempt: neither the 999999 s asked for nor less than an hour
    assert (due - when(attempt["started_at"])).total_seconds() >= 3600
    assert (due - datetime.now(timezone.utc)).total_seconds() <= 3600


def test_retry_survives_restart(applied, engine, receiver, db_path):
    server = receiver([Reply(500), Reply(200)])
    applied(webhook_rules(server.url, settings="settings:\n  webhook: {backoff: 1}"))
    first = engine()
    delivery_id = send(first)
    server.wait_for(1)
    wait_until(lambda: deliveries(db_path, id=delivery_id)[0]["attempts"] == 1)
    first.stop(grace=5)
    assert deliveries(db_path, id=delivery_id)[0]["status"] == "pending"
    assert len(server.requests) == 1
    second = engine()
    wait_status(db_path, delivery_id, "delivered")
    assert [r.headers["webhook-id"] for r in server.requests] == [delivery_id, delivery_id]
    assert [a["status_code"] for a in attempts(db_path, delivery_id)] == [500, 200]
    assert second is not first


def test_hanging_destination_does_not_block_another(applied, engine, receiver):
    slow = receiver([Reply(200, delay=30)])
    fast = receiver()
    applied(f"""
{FAST}
webhooks:
  slow: {{url: "{slow.url}", timeout: 20}}
  fast: {{url: "{fast.url}"}}
tasks:
  to-slow: {{action: webhook.send, with: {{webhook: slow}}}}
  to-fast: {{action: webhook.send, with: {{webhook: fast}}}}
""")
    e = engine()
    slow_ids = [send(e, "to-slow") for _ in range(40)]  # more than the per-destination limit
    slow.wait_for(32)
    fast_id = send(e, "to-fast")
    wait_status(e.db_path, fast_id, "delivered", timeout=15)
    # delivered while every request to the slow destination still hangs (its timeout is 20 s,
    # its answers take 30): no slow attempt has ended, so the fast one did not wait for one
    assert all(attempts(e.db_path, i) == [] for i in slow_ids)
    assert len(slow.requests) == 32  # bounded per destination
    assert {r["status"] for r in deliveries(e.db_path, webhook="slow")} <= {"sending", "pending"}
    assert slow_ids


def test_egress_denies_metadata_address_without_connecting(applied, engine):
    applied(webhook_rules("http://169.254.169.254/latest/meta-data"))
    e = engine()
    delivery_id = send(e)
    row = wait_status(e.db_path, delivery_id, "failed")
    assert row["last_error"].startswith("egress to 169.254.169.254 refused")
    assert "169.254.0.0/16" in row["last_error"]
    a = attempts(e.db_path, delivery_id)
    assert len(a) == 1 and a[0]["status_code"] is None and a[0]["address"] is None
    wait_until(lambda: query(e.db_path, "SELECT 1 FROM events WHERE type = 'webhook.failed'"))


def test_egress_deny_applies_to_the_resolved_address(applied, engine, receiver):
    server = receiver()
    applied(webhook_rules(f"http://localhost:{server.port}/hook",
                  settings="settings:\n  webhook: {deny: [127.0.0.0/8, '::1/128']}"))
    e = engine()
    delivery_id = send(e)
    row = wait_status(e.db_path, delivery_id, "failed")
    assert "localhost resolves only to refused addresses" in row["last_error"]
    assert "denied by settings.webhook.deny" in row["last_error"]
    assert server.connections == 0


def test_egress_allow_punches_a_hole(applied, engine, receiver):
    server = receiver()
    applied(webhook_rules(server.url, settings="settings:\n  webhook: {deny: [0.0.0.0/0], allow: [127.0.0.1/32]}"))
    e = engine()
    wait_status(e.db_path, send(e), "delivered")
