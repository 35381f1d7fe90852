"""Rows an action hands to the engine are committed in the transaction that records its run's
outcome (taskengine_core.outcome_writes): ``webhook.send``'s delivery and its run's success are
one commit, all or nothing; a refused delivery fails only its own run; a writer that raises
fails its runs, writes none of their rows, and the other outcomes are still recorded."""

from __future__ import annotations

import sqlite3
import threading
from datetime import datetime, timezone

import pytest

from taskengine_core import executor as executor_module
from taskengine_core.deliveries import deliveries_for
from taskengine_core.outcome_writes import write_with_outcomes
from taskengine_core.runs import Outcome
from taskengine_core.store import open_store
from taskengine_webhook.intake import writer_for
from tests.backends import db_path, rows  # noqa: F401 (fixture: both backends)
from tests.test_webhook_support import receiver, wait_until  # noqa: F401 (fixture)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)


def hooks(url: str) -> str:
    return f"""
        webhooks:
          hook: {{url: "{url}", retries: 0}}
          off: {{url: "{url}", retries: 0}}
        tasks:
          forward: {{action: webhook.send, concurrency: parallel, with: {{webhook: hook}}}}
        events:
          all: {{on: test.fanout, tasks: [forward]}}
        """


def outcome(run_id: str, writes: list, status: str = "succeeded") -> Outcome:
    return Outcome(run_id, status, NOW, NOW, output={"run": run_id}, writes=writes)


def delivery(run_id: str, webhook: str) -> tuple[str, dict]:
    return webhook, {"id": f"msg_{run_id}", "webhook": webhook, "type": "t", "body": "{}",
                     "content_type": "application/json", "run_id": run_id}


def queued_ids(target) -> list[str]:
    return sorted(r["id"] for r in rows(target, "SELECT id FROM webhook_deliveries"))


@pytest.fixture
def store_with_hooks(applied, db_path):  # noqa: F811
    applied(hooks("http://127.0.0.1:9/never"))
    store = open_store(db_path)
    with store.write() as db:  # a destination that answered 410 is disabled by the dispatcher
        db.conn.execute("UPDATE webhooks SET enabled = 0 WHERE name = 'off'")
    yield store
    store.close()


def test_refused_deliveries_fail_only_their_own_runs(store_with_hooks, db_path):  # noqa: F811
    writer = writer_for(deliveries_for(store_with_hooks))
    outcomes = [outcome("r1", [(writer, delivery("r1", "hook"))]),
                outcome("r2", [(writer, delivery("r2", "missing"))]),
                outcome("r3", [(writer, delivery("r3", "off"))]),
                outcome("r4", [(writer, delivery("r4", "hook"))]),
                outcome("r5", [(writer, delivery("r5", "hook"))], status="failed"),
                outcome("r6", None)]
    with store_with_hooks.write() as db:
        done = write_with_outcomes(db.conn, outcomes, NOW)
    assert len(done) == 1
    assert [(o.run, o.status) for o in outcomes] == [
        ("r1", "succeeded"), ("r2", "failed"), ("r3", "failed"), ("r4", "succeeded"), ("r5", "failed"),
        ("r6", "succeeded")]
    assert outcomes[1].error == ("no webhook named 'missing'; define it under 'webhooks:' and run "
                                 "'taskengine apply'")
    assert outcomes[2].error == "webhook 'off' is disabled; 'taskengine webhooks enable off' turns it back on"
    assert not outcomes[1].retryable and not outcomes[2].retryable
    assert outcomes[1].output is None and outcomes[0].output == {"run": "r1"}
    # nothing of a refused run, nor of a failed attempt, is queued
    assert queued_ids(db_path) == ["msg_r1", "msg_r4"]


def test_a_writer_that_raises_fails_its_runs_and_writes_none_of_them(store_with_hooks, db_path):  # noqa: F811
    class Broken:
        def write(self, conn, items, now):
            raise RuntimeError("the writer broke")

    writer = writer_for(deliveries_for(store_with_hooks))
    outcomes = [outcome("r1", [(writer, delivery("r1", "hook"))]),
                outcome("r2", [(writer, delivery("r2", "hook")), (Broken(), "x")]),
                outcome("r3", None)]
    with store_with_hooks.write() as db:
        assert write_with_outcomes(db.conn, outcomes, NOW) == []
        db.conn.execute("UPDATE webhooks SET description = 'still usable' WHERE name = 'hook'")
    assert [o.status for o in outcomes] == ["failed", "failed", "succeeded"]
    assert outcomes[0].error == ("what the action queued could not be recorded "
                                 "(RuntimeError: the writer broke)")
    assert outcomes[0].retryable  # the next attempt may well record it
    assert queued_ids(db_path) == []  # the savepoint undid the delivery the first writer wrote


def test_a_run_succeeds_in_the_very_commit_that_queues_its_delivery(applied, db_path, receiver,  # noqa: F811
                                                                     monkeypatch):
    from taskengine_core.engine import Engine
    from taskengine_core.events import Event

    server = receiver()
    applied(hooks(server.url))
    real = executor_module.record_outcomes
    seen: list = []  # per failed call: the runs, and what another connection saw of their deliveries
    lock = threading.Lock()

    def fail_once(conn, outcomes, *args, **kwargs):
        with lock:
            first = not seen and any(o.status == "succeeded" for o in outcomes)
            if first:
                ids = [o.run.id for o in outcomes]
                seen.append((ids, [r["run_id"] for r in rows(db_path, "SELECT run_id FROM webhook_deliveries")
                                   if r["run_id"] in ids]))
        if first:  # undoes the whole transaction, the deliveries written in it too
            raise sqlite3.OperationalError("database is locked (injected)")
        return real(conn, outcomes, *args, **kwargs)

    monkeypatch.setattr(executor_module, "record_outcomes", fail_once)
    engine = Engine(db_path, poll_interval=0.02)
    engine.start()
    try:
        engine.emit_many([Event("test.fanout", {"i": i}) for i in range(40)])
        wait_until(lambda: len(rows(db_path, "SELECT id FROM webhook_deliveries WHERE status = 'delivered'")) == 40,
                   timeout=30, what="40 deliveries delivered")
    finally:
        engine.stop(grace=5)
    assert seen, "no outcome was recorded"
    ids, visible = seen[0]
    assert visible == []  # written in the outcome's transaction: not committed before it
    runs = rows(db_path, "SELECT id, status, attempt FROM runs")
    assert len(runs) == 40 and {r["status"] for r in runs} == {"succeeded"}
    assert {r["attempt"] for r in runs if r["id"] in ids} == {1}  # recorded on the write's retry
    deliveries = rows(db_path, "SELECT run_id, attempts FROM webhook_deliveries")
    assert sorted(d["run_id"] for d in deliveries) == sorted(r["id"] for r in runs)
    assert {d["attempts"] for d in deliveries} == {1}
    assert len(server.requests) == 40


def test_a_locked_database_leaves_the_outcomes_for_the_next_step(store_with_hooks, db_path):  # noqa: F811
    class Locked:
        def write(self, conn, items, now):
            raise sqlite3.OperationalError("database is locked")

    writer = writer_for(deliveries_for(store_with_hooks))
    outcomes = [outcome("r1", [(writer, delivery("r1", "hook")), (Locked(), "x")])]
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        with store_with_hooks.write() as db:
            write_with_outcomes(db.conn, outcomes, NOW)
    assert (outcomes[0].status, outcomes[0].error) == ("succeeded", None)  # written as it is next time
    assert queued_ids(db_path) == []


def test_a_writer_stopped_by_a_base_exception_tells_the_others_their_writes_were_undone(
        store_with_hooks, db_path):  # noqa: F811
    """The savepoint is undone whatever ends it; a writer that rode along (the webhook
    dispatcher, which wrote its finished attempts there) must hear of it, or what it handed
    over is lost."""
    from taskengine_core.outcome_writes import Written

    undone: list = []

    class Riding:
        def write(self, conn, items, now):
            return Written(rolled_back=lambda: undone.append(items))

    class Exiting:
        def write(self, conn, items, now):
            raise SystemExit(3)

    writer = writer_for(deliveries_for(store_with_hooks))
    outcomes = [outcome("r1", [(writer, delivery("r1", "hook")), (Riding(), "a"), (Exiting(), "b")])]
    with pytest.raises(SystemExit):
        with store_with_hooks.write() as db:
            write_with_outcomes(db.conn, outcomes, NOW)
    assert undone == [["a"]]
    assert queued_ids(db_path) == []
