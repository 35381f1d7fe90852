"""The dispatcher's life: crash recovery, stopping with requests in flight, configuration
changes picked up while running, TLS verification, retention."""

from __future__ import annotations

import logging
import sqlite3
from datetime import datetime, timedelta, timezone

from taskengine_core.clock import to_iso
from taskengine_core.engine import Engine
from taskengine_webhook import enqueue
from taskengine_webhook import store as wstore
from taskengine_webhook.dispatcher import Dispatcher
from tests.test_webhook_support import (  # noqa: F401 (fixtures)
    FAST, attempts, deliveries, engine, receiver, Reply, tls_server_context, wait_status,
    wait_until, webhook_rules)


def test_delivery_left_sending_by_a_dead_process_is_sent(applied, engine, receiver, db_path):
    server = receiver()
    applied(webhook_rules(server.url))
    [delivery_id] = enqueue(str(db_path), "hook", [{"n": 1}])
    conn = sqlite3.connect(db_path)
    with conn:
        conn.execute("UPDATE webhook_deliveries SET status = 'sending', lease_owner = ?, "
                     "lease_expires = ? WHERE id = ?",
                     ("otherhost:1:1", to_iso(datetime.now(timezone.utc) - timedelta(seconds=1)),
                      delivery_id))
    conn.close()
    engine()
    wait_status(db_path, delivery_id, "delivered")
    assert server.requests[0].headers["webhook-id"] == delivery_id


def test_stop_gives_back_claimed_deliveries_without_counting_an_attempt(applied, receiver, db_path):
    server = receiver([Reply(200, delay=30)])
    applied(webhook_rules(server.url))
    ids = enqueue(str(db_path), "hook", [{"n": i} for i in range(3)])
    host = Engine(db_path)
    dispatcher = Dispatcher(host.info, grace=0.2)
    dispatcher.start()
    server.wait_for(3)
    dispatcher.stop()
    rows = deliveries(db_path)
    assert {r["status"] for r in rows} == {"pending"} and {r["attempts"] for r in rows} == {0}
    assert all(attempts(db_path, i) == [] for i in ids)


def test_settings_change_applies_without_restart(applied, engine, receiver, db_path):
    server = receiver()
    applied(webhook_rules(server.url))
    e = engine()
    wait_status(db_path, enqueue(str(db_path), "hook", [{"n": 1}])[0], "delivered")
    applied(webhook_rules(server.url, settings="settings:\n  webhook: {deny: [127.0.0.0/8]}"))
    wait_until(lambda: e.runtime.generation >= 2)
    refused = enqueue(str(db_path), "hook", [{"n": 2}])[0]
    row = wait_status(db_path, refused, "failed")
    assert "denied by settings.webhook.deny" in row["last_error"] and len(server.requests) == 1


def test_destination_url_change_applies_without_restart(applied, engine, receiver, db_path):
    old, new = receiver(), receiver()
    applied(webhook_rules(old.url))
    engine()
    wait_status(db_path, enqueue(str(db_path), "hook", [{"n": 1}])[0], "delivered")
    applied(webhook_rules(new.url))
    wait_status(db_path, enqueue(str(db_path), "hook", [{"n": 2}])[0], "delivered", timeout=5)
    assert len(old.requests) == 1 and len(new.requests) == 1


def test_removed_destination_fails_its_pending_deliveries(applied, db_path, engine, receiver):
    server = receiver()
    applied(webhook_rules(server.url))
    [delivery_id] = enqueue(str(db_path), "hook", [{"n": 1}])
    applied(f"{FAST}\nwebhooks:\n  spare: {{url: '{server.url}'}}\n")
    engine()
    row = wait_status(db_path, delivery_id, "failed")
    assert "no longer exists" in row["last_error"] and server.requests == []


def test_tls_verified_by_default_allow_insecure_turns_it_off(applied, engine, receiver, db_path,
                                                              tls_server_context, caplog):
    caplog.set_level(logging.WARNING)
    server = receiver(tls=tls_server_context)
    applied(f"""
{FAST}
webhooks:
  strict: {{url: "{server.url}", retries: 0}}
  lax: {{url: "{server.url}", verify_tls: false, retries: 0}}
  insecure: {{url: "{server.url}", verify_tls: false, allow_insecure: true}}
""")
    engine()
    strict, lax, insecure = (enqueue(str(db_path), name, [{"n": 1}])[0] for name in ("strict", "lax", "insecure"))
    for delivery_id in (strict, lax):
        row = wait_status(db_path, delivery_id, "exhausted")
        assert "certificate verify failed" in row["last_error"]
    wait_status(db_path, insecure, "delivered")
    assert len(server.requests) == 1
    assert "verify_tls: false is ignored without allow_insecure: true" in caplog.text


def test_prune_keeps_unfinished_deliveries(applied, db_path):
    applied(webhook_rules("http://127.0.0.1:9/x"))
    old, pending = enqueue(str(db_path), "hook", [{"n": 1}, {"n": 2}])
    long_ago = to_iso(datetime.now(timezone.utc) - timedelta(days=100))
    conn = sqlite3.connect(db_path)
    with conn:
        conn.execute("UPDATE webhook_deliveries SET created_at = ?", (long_ago,))
        conn.execute("UPDATE webhook_deliveries SET status = 'delivered', finished_at = ? WHERE id = ?",
                     (long_ago, old))
        assert wstore.prune(conn, datetime.now(timezone.utc)) == 1
    assert [r["id"] for r in deliveries(db_path)] == [pending]
    conn.close()
