"""Retention in short batches (issue 9): the same rows go as with one big delete, a batch at a
time, and between batches other writers (the ingress) get the write lock."""

from __future__ import annotations

import json
import sqlite3

from taskengine_core.store import Store
from taskengine_core.task_logs import Pruner, prune
from tests.conftest import FakeClock

NOW = "2026-06-01T00:00:00+00:00"
OLD, RECENT = "2026-01-01T00:00:00.000000Z", "2026-05-31T00:00:00.000000Z"


def history(store: Store) -> None:
    with store.write() as db:
        c = db.conn
        runs = [(f"done{i}", "succeeded", f"ev{i}", OLD, OLD) for i in range(20)]
        runs += [("failed-old", "failed", None, OLD, OLD), ("skipped-old", "skipped", None, OLD, None),
                 ("pending-old", "pending", "ev-pending", OLD, None), ("running-old", "running", None, OLD, None),
                 ("done-recent", "succeeded", "ev-recent", RECENT, RECENT),
                 ("created-old-finished-recent", "succeeded", None, OLD, RECENT)]
        c.executemany("INSERT INTO runs (id, task, status, trigger, event_id, not_before, created_at, finished_at) "
                      "VALUES (?, 't', ?, 'event', ?, ?, ?, ?)",
                      [(i, s, e, created, created, finished) for i, s, e, created, finished in runs])
        c.executemany("INSERT INTO attempts (run_id, number, started_at, outcome) VALUES (?, 1, ?, 'succeeded')",
                      [(r[0], OLD) for r in runs])
        c.executemany("INSERT INTO decisions (time, decision, run_id, event_id) VALUES (?, 'matched', ?, ?)",
                      [(OLD, r[0], r[2]) for r in runs])
        c.executemany("INSERT INTO decisions (time, decision, event_id) VALUES (?, 'skipped', ?)",
                      [(OLD, f"ev{i}") for i in range(7)] + [(RECENT, "ev-recent")])
        events = [(f"ev{i}", OLD, OLD) for i in range(20)] + [
            ("ev-pending", OLD, OLD), ("ev-unprocessed", OLD, None), ("ev-recent", RECENT, RECENT),
            ("ev-alone", OLD, OLD)]
        c.executemany("INSERT INTO events (id, type, source, data, time, received_at, processed_at) "
                      "VALUES (?, 'x', 'test', '{}', ?, ?, ?)", [(e, t, t, p) for e, t, p in events])
        c.executemany("INSERT INTO throttles (rule, key, until) VALUES ('r', ?, ?)",
                      [(json.dumps([i]), OLD) for i in range(9)] + [("[99]", "2026-07-01T00:00:00Z")])
        c.executemany("INSERT INTO schedule_slots (schedule, due, status, claimed_at) VALUES ('s', ?, 'fired', ?)",
                      [(f"2026-01-0{1 + i % 9}T0{i % 10}:00:00Z", OLD) for i in range(8)]
                      + [(RECENT, RECENT)])


def left(path) -> dict:
    conn = sqlite3.connect(path)
    try:
        return {
            "runs": sorted(r[0] for r in conn.execute("SELECT id FROM runs")),
            "attempts": sorted(r[0] for r in conn.execute("SELECT run_id FROM attempts")),
            "decisions": sorted((r[0] or "", r[1] or "") for r in conn.execute("SELECT run_id, event_id FROM decisions")),
            "events": sorted(r[0] for r in conn.execute("SELECT id FROM events")),
            "throttles": conn.execute("SELECT count(*) FROM throttles").fetchone()[0],
            "slots": conn.execute("SELECT count(*) FROM schedule_slots").fetchone()[0],
        }
    finally:
        conn.close()


EXPECTED = {
    "runs": sorted(["pending-old", "running-old", "done-recent", "created-old-finished-recent"]),
    "attempts": sorted(["pending-old", "running-old", "done-recent", "created-old-finished-recent"]),
    "decisions": sorted([("created-old-finished-recent", ""), ("done-recent", "ev-recent"),
                         ("pending-old", "ev-pending"), ("running-old", ""), ("", "ev-recent")]),
    "events": sorted(["ev-pending", "ev-unprocessed", "ev-recent"]),
    "throttles": 1,
    "slots": 1,
}


def test_batched_prune_removes_exactly_what_retention_says(tmp_path):
    store = Store(tmp_path / "a.db")
    history(store)
    removed = prune(store, 30 * 86400, clock=FakeClock(NOW), batch=3, pause=0)
    assert left(store.path) == EXPECTED
    assert removed["runs"] == 22 and removed["events"] == 21


def test_the_batch_size_does_not_change_the_result(tmp_path):
    for batch in (1, 2, 5, 1000, None):
        store = Store(tmp_path / f"b{batch}.db")
        history(store)
        prune(store, 30 * 86400, clock=FakeClock(NOW), batch=batch, pause=0)
        assert left(store.path) == EXPECTED, batch


def test_between_batches_the_write_lock_is_free_and_no_batch_exceeds_its_size(tmp_path):
    store = Store(tmp_path / "c.db")
    history(store)
    pruner = Pruner(store, 30 * 86400, clock=FakeClock(NOW), batch=4)
    other = sqlite3.connect(store.path, isolation_level=None, timeout=0)
    runs_before = 26
    steps = 0
    while pruner.step():
        steps += 1
        other.execute("BEGIN IMMEDIATE")  # another writer gets in between two batches
        other.execute("INSERT INTO meta (key, value) VALUES (?, 'x')", (f"writer-{steps}",))
        other.execute("COMMIT")
        runs_now = other.execute("SELECT count(*) FROM runs").fetchone()[0]
        assert runs_before - runs_now <= 4
        runs_before = runs_now
    assert steps > 6  # 22 runs at 4 a batch, then the other tables
    assert left(store.path) == EXPECTED


def test_the_engine_prunes_a_batch_per_loop_step(applied, db_path):
    from taskengine_core.engine import Engine
    from taskengine_core import task_logs

    applied("settings: {retention: 30d}\n")
    store = Store(db_path)
    history(store)
    engine = Engine(db_path, clock=FakeClock(NOW), wake_listener=False)
    old_batch = task_logs.PRUNE_BATCH
    task_logs.PRUNE_BATCH = 5
    try:
        engine._maybe_prune()  # starts the prune and deletes its first batch
        assert engine._pruner is not None
        assert len(left(db_path)["runs"]) == 26 - 5
        while engine._pruner is not None:
            engine._maybe_prune()
    finally:
        task_logs.PRUNE_BATCH = old_batch
    assert left(db_path) == EXPECTED
