"""The dispatcher after a 410 and when its first write fails (in the engine's process and in a
process of its own): it stops sending to a destination the moment it answers 410 Gone, and a
database it cannot write at start is tried again instead of ending the dispatcher."""

from __future__ import annotations

import sqlite3
import time

import pytest

from taskengine_core.engine import Engine
from taskengine_core.store import db as store_db
from taskengine_webhook import enqueue
from taskengine_webhook.dispatcher import Dispatcher
from tests.test_webhook_processes import processes_rules
from tests.test_webhook_support import (  # noqa: F401 (fixtures)
    Reply, deliveries, engine, receiver, wait_status, wait_until, webhook_rules)

SLOW_410 = Reply(410, b"gone", delay=0.3)  # the others are claimed and queued meanwhile


@pytest.mark.parametrize("processes", [0, 1])
def test_nothing_more_is_sent_to_a_destination_once_it_answers_410(
        applied, engine, receiver, db_path, processes):
    server = receiver([SLOW_410] + [Reply(200)] * 10)
    rules = processes_rules(server.url, processes)
    applied(rules.replace(f"processes: {processes}", f"processes: {processes}, concurrency: 1"))
    e = engine()
    enqueue(e.deliveries, "hook", [{"n": i} for i in range(4)])
    wait_until(lambda: any(r["status"] == "failed" for r in deliveries(db_path)), what="the 410")
    time.sleep(0.5)  # what would have been sent after it, had the dispatcher gone on
    assert len(server.requests) == 1
    rows = deliveries(db_path)
    assert sorted(r["status"] for r in rows) == ["failed", "pending", "pending", "pending"]
    assert [r["attempts"] for r in rows if r["status"] == "pending"] == [0, 0, 0]  # held, not spent


def test_a_database_locked_when_the_dispatcher_starts_is_tried_again(
        applied, receiver, db_path, monkeypatch):
    server = receiver()
    applied(webhook_rules(server.url))
    [delivery_id] = enqueue(str(db_path), "hook", [{"n": 1}])
    host = Engine(db_path)
    monkeypatch.setattr(store_db, "BUSY_TIMEOUT_MS", 100)  # the dispatcher's connections give up fast
    holder = sqlite3.connect(db_path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process writing: a long apply, a prune
    dispatcher = Dispatcher(host.info, poll=0.05)
    try:
        dispatcher.start()
        time.sleep(0.5)  # its first write (putting back what dead dispatchers left) fails meanwhile
        assert dispatcher._thread.is_alive()
        holder.execute("ROLLBACK")
        wait_status(db_path, delivery_id, "delivered")
        assert len(server.requests) == 1
    finally:
        holder.close()
        dispatcher.stop()


def test_a_message_waiting_behind_slow_requests_is_sent_once(applied, engine, receiver, db_path, monkeypatch):
    """A destination holds HOLD x concurrency claimed messages; those queued behind requests
    that run to their timeout wait that long before their own request starts. Their lease was
    the request's timeout and a margin only, so it expired while they waited: the dispatcher's
    scan put them back to 'pending', claimed them again, and sent them twice, counting two
    attempts. The lease now covers the wait in the queue too."""
    import taskengine_webhook.store as webhook_store

    monkeypatch.setattr(webhook_store, "LEASE_MARGIN", 0.3)  # 60 s: the same, sooner
    server = receiver([Reply(200, delay=3)])  # past the webhook's timeout: every request fails
    rules = webhook_rules(server.url, settings="settings:\n  webhook: {backoff: 0.05, concurrency: 1}\n")
    applied(rules.replace(f"    url: {server.url}\n", f"    url: {server.url}\n    timeout: 2s\n    retries: 0\n"))
    e = engine()
    enqueue(e.deliveries, "hook", [{"n": i} for i in range(4)])
    wait_until(lambda: all(r["status"] == "exhausted" for r in deliveries(db_path)), timeout=30,
               what="every delivery tried once, then given up")
    time.sleep(2.5)  # a second send, had one been queued, would be on its way
    assert len(server.requests) == 4
    assert [r["attempts"] for r in deliveries(db_path)] == [1, 1, 1, 1]


@pytest.mark.parametrize("processes", [0, 1])
def test_a_retry_comes_due_while_another_destination_keeps_the_dispatcher_busy(
        applied, engine, receiver, db_path, processes):
    """Wake-ups name the destination that got deliveries; the dispatcher looked at every
    destination (retries come due, leases expire) only when no wake-up came for a whole wait.
    A steady stream to one webhook kept another's retry waiting for as long as it lasted."""
    busy = receiver([Reply(200)])
    other = receiver([Reply(500), Reply(200)])
    applied(f"""
settings:
  webhook: {{backoff: 0.2, max_backoff: 1, processes: {processes}}}
webhooks:
  busy: {{url: "{busy.url}"}}
  other: {{url: "{other.url}"}}
tasks:
  t: {{action: webhook.send, with: {{webhook: busy}}}}
""")
    e = engine()
    enqueue(e.deliveries, "other", [{"n": "retried"}])
    other.wait_for(1, timeout=20)

    def other_delivered() -> bool:
        return [r["status"] for r in deliveries(db_path) if r["webhook"] == "other"] == ["delivered"]

    sent = 0
    for _ in range(400):  # a delivery to 'busy' every 20 ms, for up to 8 s
        enqueue(e.deliveries, "busy", [{"n": sent}])
        sent += 1
        time.sleep(0.02)
        if other_delivered():
            break
    assert other_delivered(), f"the retry waited through {sent} deliveries to another webhook"
    assert len(other.requests) == 2


@pytest.mark.parametrize("processes", [0, 1])
def test_a_retention_prune_that_fails_costs_the_pass_nothing_it_committed(
        applied, engine, receiver, db_path, processes):
    """The retention prune runs at the end of a look at every destination (a scan), after the
    pass has committed its claims and results. A prune that failed (the database refused the
    delete: locked past its timeout, a trigger, a missing privilege) failed the whole pass: its
    claims were dropped, left 'sending' under the dispatcher's lease until it expired, and the
    retried pass was a scan again, whose prune failed again: nothing was ever sent."""
    server = receiver()
    applied(processes_rules(server.url, processes))
    [old] = enqueue(str(db_path), "hook", [{"n": "finished long ago"}])
    conn = sqlite3.connect(db_path, isolation_level=None)
    try:
        conn.execute("UPDATE webhook_deliveries SET status = 'delivered', created_at = "
                     "'2000-01-01T00:00:00.000000Z', finished_at = '2000-01-01T00:00:00.000000Z' "
                     "WHERE id = ?", (old,))
        conn.execute("CREATE TRIGGER refuse_prune BEFORE DELETE ON webhook_deliveries "
                     "BEGIN SELECT RAISE(ABORT, 'deleting deliveries is refused'); END")
    finally:
        conn.close()
    e = engine()
    [delivery_id] = enqueue(e.deliveries, "hook", [{"n": 1}])
    wait_status(db_path, delivery_id, "delivered")
    assert len(server.requests) == 1
    assert [r["status"] for r in deliveries(db_path)] == ["delivered", "delivered"]  # nothing pruned
