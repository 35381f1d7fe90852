"""The statements behind logs, retention, the webhook dispatcher and the replace policy use
their indexes (EXPLAIN QUERY PLAN of the SQL the real functions run), also once SQLite has
statistics (ANALYZE) for a database full of history."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone

import pytest

from taskengine_core.clock import to_iso
from taskengine_core.store import Store

NOW = datetime(2026, 6, 1, tzinfo=timezone.utc)


def iso(days_ago: float) -> str:
    return to_iso(NOW - timedelta(days=days_ago))


@pytest.fixture(params=["fresh", "analyzed"])
def store(tmp_path, request):
    """A database with history: 3,000 finished runs (and their attempts and decisions), a few
    pending and running ones, events, throttles, slots and webhook deliveries."""
    store = Store(tmp_path / "plans.db")
    with store.write() as db:
        c = db.conn
        c.executemany(
            "INSERT INTO runs (id, task, status, trigger, event_id, not_before, created_at, finished_at) "
            "VALUES (?, ?, ?, 'event', ?, ?, ?, ?)",
            [(f"r{i}", f"t{i % 20}", "succeeded" if i % 50 else "failed", f"e{i}", iso(i / 10), iso(i / 10),
              iso(i / 10)) for i in range(3000)]
            + [(f"p{i}", f"t{i % 20}", "pending", None, iso(-1), iso(0), None) for i in range(30)]
            + [(f"x{i}", f"t{i}", "running", None, iso(0), iso(0), None) for i in range(5)])
        c.executemany("INSERT INTO attempts (run_id, number, started_at, outcome) VALUES (?, 1, ?, 'succeeded')",
                      [(f"r{i}", iso(i / 10)) for i in range(3000)])
        c.executemany("INSERT INTO decisions (time, decision, event_id, rule, task, run_id) "
                      "VALUES (?, 'matched', ?, 'rule', ?, ?)",
                      [(iso(i / 10), f"e{i}", f"t{i % 20}", f"r{i}") for i in range(3000)])
        c.executemany("INSERT INTO events (id, type, source, data, time, received_at, processed_at) "
                      "VALUES (?, 'go', 'test', '{}', ?, ?, ?)", [(f"e{i}", iso(i / 10), iso(i / 10), iso(i / 10))
                                                                 for i in range(3000)])
        c.executemany("INSERT INTO throttles (rule, key, until) VALUES (?, ?, ?)",
                      [("rule", json.dumps([i]), iso(i / 10)) for i in range(500)])
        c.executemany("INSERT INTO schedule_slots (schedule, due, status, claimed_at) VALUES (?, ?, 'fired', ?)",
                      [(f"s{i % 10}", iso(i / 10), iso(i / 10)) for i in range(1000)])
        c.executemany(
            "INSERT INTO webhook_deliveries (id, webhook, status, type, body, content_type, created_at, "
            "next_attempt_at, finished_at) VALUES (?, ?, ?, 'x', '{}', 'application/json', ?, ?, ?)",
            [(f"d{i}", f"hook{i % 5}", "delivered" if i % 10 else "pending", iso(i / 10),
              iso(-i / 10 - 1), iso(i / 10) if i % 10 else None) for i in range(3000)])
        c.execute("INSERT INTO webhooks (name, spec, created_at, updated_at) VALUES "
                  "('hook1', '{\"url\": \"http://127.0.0.1:9/\"}', 'x', 'x')")
    if request.param == "analyzed":
        store.conn.execute("ANALYZE")
    return store


def plans(store: Store, action) -> list[tuple[str, str]]:
    """``(statement, query plan)`` for every statement ``action`` runs (values bound in)."""
    statements: list[str] = []
    store.conn.set_trace_callback(statements.append)
    try:
        action()
    finally:
        store.conn.set_trace_callback(None)
    out = []
    for sql in statements:
        if re.match(r"\s*(SELECT|DELETE|UPDATE|INSERT|WITH)", sql, re.I):
            plan = " | ".join(r[3] for r in store.conn.execute("EXPLAIN QUERY PLAN " + sql))
            out.append((sql, plan))
    return out


def plan_of(found: list[tuple[str, str]], fragment: str) -> str:
    matching = [plan for sql, plan in found if fragment in sql]
    assert matching, f"no statement containing {fragment!r} in {[s for s, _ in found]}"
    return " || ".join(matching)


def no_full_scan(plan: str, *tables: str) -> None:
    for table in tables:
        assert not re.search(rf"\bSCAN {table}\b(?! USING)", plan), plan


def test_logs_show_finds_a_runs_decisions_by_index(store):
    from taskengine_core.task_logs import show_run

    found = plans(store, lambda: show_run(store, "r7"))
    plan = plan_of(found, "FROM decisions WHERE run_id")
    assert "decisions_by_run" in plan
    no_full_scan(plan, "decisions")


def test_logs_list_by_status_walks_the_status_index(store):
    from taskengine_core.task_logs import list_runs

    found = plans(store, lambda: list_runs(store, status="failed", limit=5))
    plan = plan_of(found, "FROM runs WHERE status")
    assert "runs_by_status (status=?)" in plan and "TEMP B-TREE" not in plan


def test_webhook_deliveries_by_status_walks_the_status_index(store):
    from plugins.webhook.store import list_deliveries

    found = plans(store, lambda: list_deliveries(store.conn, status="delivered", limit=5))
    plan = plan_of(found, "FROM webhook_deliveries WHERE status")
    assert "webhook_deliveries_by_status (status=?)" in plan and "TEMP B-TREE" not in plan


def test_replace_policy_looks_up_running_runs_by_the_running_index(store):
    from taskengine_core.model import RetryPolicy, Runtime, TaskConfig
    from taskengine_core.rule_index import RuleIndex
    from taskengine_core.runs import claim_due

    task = TaskConfig("t1", "command.run", {}, retry=RetryPolicy(), concurrency="replace")
    runtime = Runtime(1, {"t1": task}, RuleIndex([]), {})
    with store.write() as db:  # a replace run due while t1 runs
        db.conn.execute("UPDATE runs SET task = 't1', not_before = ? WHERE id = 'p0'", (iso(1),))
        db.conn.execute("UPDATE runs SET task = 't1' WHERE id = 'x0'")

    def claim():
        with store.write() as db:
            claim_due(db.conn, runtime, NOW, "owner", 60, 10)
            db.conn.execute("ROLLBACK")
            db.conn.execute("BEGIN")

    found = plans(store, claim)
    plan = plan_of(found, "AND cancel_requested = 0")
    assert "runs_running (task=?)" in plan


def test_the_hot_claim_and_inbox_queries_keep_their_indexes(store):
    from taskengine_core.events import inbox_waiting
    from taskengine_core.model import Runtime
    from taskengine_core.rule_index import RuleIndex
    from taskengine_core.runs import claim_due

    def work():
        inbox_waiting(store.conn)
        with store.write() as db:
            claim_due(db.conn, Runtime(1, {}, RuleIndex([]), {}), NOW, "owner", 60, 10)
            db.conn.execute("ROLLBACK")
            db.conn.execute("BEGIN")

    found = plans(store, work)
    assert "events_unprocessed" in plan_of(found, "processed_at IS NULL LIMIT 1")
    assert "runs_due" in plan_of(found, "ORDER BY r.not_before")


def test_retention_deletes_through_indexes(store):
    from taskengine_core.task_logs import prune
    from tests.conftest import FakeClock

    found = plans(store, lambda: prune(store, 100 * 86400, clock=FakeClock(NOW.isoformat()), batch=100,
                                       pause=0))
    assert "runs_expiry" in plan_of(found, "DELETE FROM runs")
    assert "decisions_by_run" in plan_of(found, "DELETE FROM decisions WHERE run_id IN")
    assert "decisions_by_time" in plan_of(found, "FROM decisions WHERE time >=")
    assert "events_by_received" in plan_of(found, "FROM events WHERE received_at >=")
    assert "throttles_by_until" in plan_of(found, "FROM throttles WHERE until")
    assert "schedule_slots_by_due" in plan_of(found, "FROM schedule_slots WHERE due")
    for sql, plan in found:
        no_full_scan(plan, "runs", "decisions", "events", "attempts", "throttles", "schedule_slots")
        assert "TEMP B-TREE" not in plan, (sql, plan)


def test_webhook_retention_and_dispatcher_lookups_use_indexes(store):
    from plugins.webhook import store as wstore
    from taskengine_core.store.config import snapshot

    def dispatcher_reads():
        with snapshot(store) as conn:
            wstore.pending_webhooks(conn)
            wstore.due_webhooks(conn, NOW, ["hook1", "hook2"])
            wstore.next_due(conn, NOW)
            wstore.stale_owners(conn, NOW, lambda owner: False)
        with store.write() as db:
            wstore.fail_orphans(db.conn, NOW, {"hook0"})
            wstore.prune(db.conn, NOW, limit=100)

    found = plans(store, dispatcher_reads)
    assert "webhook_deliveries_due" in plan_of(found, "SELECT min(webhook)")
    assert "webhook_deliveries_due (webhook=? AND next_attempt_at<?)" in plan_of(
        found, "SELECT 1 FROM webhook_deliveries")
    assert "webhook_deliveries_next" in plan_of(found, "SELECT min(next_attempt_at)")
    assert "webhook_deliveries_sending" in plan_of(found, "status = 'sending'")
    assert "webhook_deliveries_due (webhook=?)" in plan_of(found, "AND webhook NOT IN")
    assert "webhook_deliveries_expiry" in plan_of(found, "DELETE FROM webhook_deliveries")
    for sql, plan in found:
        no_full_scan(plan, "webhook_deliveries", "webhook_attempts")


def test_an_upgrade_that_adds_indexes_gives_the_planner_statistics(tmp_path):
    import sqlite_utils
    from sqlite_utils.migrations import Migrations

    from taskengine_core.store.migrations import MIGRATIONS as SET

    path = tmp_path / "old.db"
    db = sqlite_utils.Database(path)
    shipped = Migrations(SET.name)
    for migration in SET._migrations[:5]:  # as the engine shipped before issue 9
        shipped()(migration.fn)
    shipped.apply(db)
    db.conn.executemany("INSERT INTO decisions (time, decision, run_id) VALUES ('t', 'matched', ?)",
                        [(f"r{i}",) for i in range(100)])
    db.conn.commit()
    db.conn.close()
    store = Store(path)
    stats = {r[0] for r in store.conn.execute("SELECT idx FROM sqlite_stat1 WHERE tbl = 'decisions'")}
    assert "decisions_by_run" in stats


def test_a_stopping_engine_runs_pragma_optimize(applied, db_path):
    from taskengine_core.engine import Engine

    applied("""
        tasks:
          t: {action: command.run, with: {argv: ["true"]}}
        events:
          e: {on: go, tasks: [t]}
    """)
    engine = Engine(db_path, wake_listener=False)
    engine.start()
    for _ in range(30):
        engine.emit("go")
    import sqlite3
    import time

    conn = sqlite3.connect(db_path)
    deadline = time.monotonic() + 30
    while conn.execute("SELECT count(*) FROM runs WHERE status = 'succeeded'").fetchone()[0] < 30:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    engine.stop(5)
    analyzed = {r[0] for r in conn.execute("SELECT DISTINCT tbl FROM sqlite_stat1")}
    assert {"runs", "events"} & analyzed
