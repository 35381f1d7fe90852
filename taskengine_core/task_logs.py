"""Task logs: what ran, how each attempt went, and why an event did or did not fire."""

from __future__ import annotations

import json
from datetime import timedelta

from taskengine_core.clock import Clock, to_iso
from taskengine_core.errors import NotFoundError
from taskengine_core.events import DEDUP_WINDOW_SECONDS, row_to_event
from taskengine_core.store import Store, where

RUN_LIST_COLUMNS = ("id, task, status, trigger, event_id, rule, schedule, slot, created_at, "
                    "not_before, started_at, finished_at, attempt, max_attempts, duration, error, attention")


def list_runs(store: Store, *, task: str | None = None, status: str | None = None,
              since_seconds: float | None = None, limit: int = 50, clock: Clock | None = None) -> list[dict]:
    clause, params = where(task=task, status=status)
    if since_seconds is not None:
        clause += (" AND" if clause else " WHERE") + " created_at >= ?"
        params.append(to_iso((clock or Clock()).now() - timedelta(seconds=since_seconds)))
    sql = f"SELECT {RUN_LIST_COLUMNS} FROM runs{clause}"
    sql += " ORDER BY created_at DESC, rowid DESC LIMIT ?"
    return list(store.db.query(sql, params + [limit]))


def show_run(store: Store, run_id: str) -> dict:
    rows = list(store.db.query("SELECT * FROM runs WHERE id = ?", [run_id]))
    if not rows:
        raise NotFoundError(f"no run with id {run_id!r}; see 'taskengine logs list'")
    run = rows[0]
    run["output"] = json.loads(run["output"]) if run["output"] else None
    run["params"] = json.loads(run["params"]) if run["params"] else None
    run["attempts"] = []
    for a in store.db.query("SELECT * FROM attempts WHERE run_id = ? ORDER BY number", [run_id]):
        a["output"] = json.loads(a["output"]) if a["output"] else None
        run["attempts"].append(a)
    run["decisions"] = list(store.db.query(
        "SELECT time, decision, reason, rule, schedule FROM decisions WHERE run_id = ? ORDER BY id", [run_id]))
    if run["event_id"]:
        event = store.conn.execute(
            "SELECT id, type, source, source_id, data, time FROM events WHERE id = ?", (run["event_id"],)).fetchone()
        run["event"] = row_to_event(event) if event else None
    return run


def explain_event(store: Store, event_id: str) -> dict:
    """What happened to an event: the recorded decisions, and every current rule's verdict."""
    from taskengine_core.model import load_runtime

    row = store.conn.execute(
        "SELECT id, type, source, source_id, data, time, processed_at, duplicate_of FROM events WHERE id = ?",
        (event_id,)).fetchone()
    if row is None:
        raise NotFoundError(f"no event with id {event_id!r}; see 'taskengine emit' or the HTTP ingress")
    event = row_to_event(row[:6])
    decisions = list(store.db.query(
        "SELECT time, decision, reason, rule, task, run_id FROM decisions WHERE event_id = ? ORDER BY id",
        [event_id]))
    runtime = load_runtime(store)
    rules = []
    for rule, matched, reason in runtime.rules.explain(event):
        payload = rule.payload
        verdict = reason
        if matched and not payload.enabled:
            verdict = "matches, but the event rule is disabled"
        elif matched:
            states = []
            for task in payload.tasks:
                tc = runtime.tasks.get(task)
                states.append(f"{task}: " + ("missing" if tc is None else "retired" if tc.retired
                                             else "enabled" if tc.enabled else "disabled"))
            verdict = "matched" + (f" (tasks {', '.join(states)})" if states else " (no tasks linked)")
        rules.append({"rule": rule.name, "matched": matched, "reason": verdict})
    return {"event": event, "processed_at": row[6], "duplicate_of": row[7],
            "decisions": decisions, "rules_now": rules}


def prune(store: Store, older_than_seconds: float, *, clock: Clock | None = None) -> dict[str, int]:
    """Delete finished runs (with attempts and decisions) and processed events older than the
    cut-off. Unfinished runs, and events that still have unfinished runs, are never deleted."""
    now = (clock or Clock()).now()
    cutoff = to_iso(now - timedelta(seconds=older_than_seconds))
    with store.write() as db:
        conn = db.conn
        runs = conn.execute(
            "DELETE FROM runs WHERE coalesce(finished_at, created_at) < ? "
            "AND status IN ('succeeded', 'failed', 'cancelled', 'skipped', 'interrupted')", (cutoff,)).rowcount
        conn.execute("DELETE FROM decisions WHERE time < ? AND (run_id IS NULL OR run_id NOT IN "
                     "(SELECT id FROM runs))", (cutoff,))
        # events stay at least as long as the (source, id) dedup window needs them
        event_cutoff = min(cutoff, to_iso(now - timedelta(seconds=DEDUP_WINDOW_SECONDS)))
        events = conn.execute(
            "DELETE FROM events WHERE received_at < ? AND processed_at IS NOT NULL AND id NOT IN "
            "(SELECT event_id FROM runs WHERE event_id IS NOT NULL)", (event_cutoff,)).rowcount
        conn.execute("DELETE FROM throttles WHERE until < ?", (cutoff,))
        # slot keys only guard against firing again, and next fire times never move back
        conn.execute("DELETE FROM schedule_slots WHERE due < ?", (cutoff,))
    return {"runs": runs, "events": events}
