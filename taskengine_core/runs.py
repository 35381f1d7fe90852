"""The life of a run in the database: claimed, finished, retried, interrupted, recovered.

Every function here runs inside the caller's write transaction and takes its connection.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from taskengine_core.clock import to_iso
from taskengine_core.events import INTERNAL_SOURCE, row_to_event
from taskengine_core.ids import new_id
from taskengine_core.model import Runtime, TaskConfig

FINAL = ("succeeded", "failed", "cancelled", "skipped", "interrupted")
# the triggering event comes with the claim, so workers need no query of their own
_CLAIM_COLUMNS = ("r.id, r.task, r.trigger, r.event_id, r.rule, r.schedule, r.slot, r.params, r.attempt, "
                  "r.max_attempts, r.depth, e.id, e.type, e.source, e.source_id, e.data, e.time")
_CLAIM_FROM = "runs r LEFT JOIN events e ON e.id = r.event_id"


def lease_owner() -> str:
    """``host:pid:start`` — enough to tell, after a crash, that the owner is gone."""
    return f"{socket.gethostname()}:{os.getpid()}:{int(datetime.now().timestamp())}"


def owner_is_dead(owner: str | None) -> bool:
    """True when ``owner`` names a process on this host that no longer exists."""
    if not owner:
        return True
    host, _, rest = owner.partition(":")
    pid_text = rest.split(":", 1)[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


@dataclass
class Claimed:
    """A run handed to a worker."""

    id: str
    task: TaskConfig
    trigger: str
    event_id: str | None
    rule: str | None
    schedule: str | None
    slot: str | None
    params: dict | None
    attempt: int
    max_attempts: int
    depth: int
    started_at: datetime | None = None
    event: dict | None = None


@dataclass
class Outcome:
    """What a worker reports about one attempt."""

    run: Claimed
    status: str  # succeeded | failed | timeout | cancelled | interrupted
    started_at: datetime
    finished_at: datetime
    output: Any = None
    error: str | None = None
    traceback: str | None = None
    retryable: bool = True
    plugin: str | None = None
    plugin_version: str | None = None
    final_status: str | None = None  # set when this attempt ended the run

    @property
    def duration(self) -> float:
        return (self.finished_at - self.started_at).total_seconds()


def claim_due(conn, runtime: Runtime, now: datetime, owner: str, lease: float, limit: int,
              only: str | None = None) -> tuple[list[Claimed], list[tuple]]:
    """Claim up to ``limit`` due runs (or just run ``only``), honouring each task's concurrency
    policy. Returns the claimed runs and the running runs to cancel (policy ``replace``).
    """
    if limit <= 0:
        return [], []
    now_text = to_iso(now)
    if only is not None:
        rows = conn.execute(f"SELECT {_CLAIM_COLUMNS} FROM {_CLAIM_FROM} WHERE r.status = 'pending' AND r.id = ?",
                            (only,)).fetchall()
    else:
        rows = conn.execute(
            f"SELECT {_CLAIM_COLUMNS} FROM {_CLAIM_FROM} WHERE r.status = 'pending' AND r.not_before <= ? "
            "ORDER BY r.not_before, r.rowid LIMIT ?", (now_text, limit * 4)).fetchall()
    if not rows:
        return [], []
    busy = dict(conn.execute(
        "SELECT task, count(*) FROM runs WHERE status = 'running' GROUP BY task").fetchall())
    claimed: list[Claimed] = []
    skipped, cancelled, replaced = [], [], []
    replace_last: dict[str, str] = {}
    for row in rows:
        task = runtime.tasks.get(row[1])
        if task and task.concurrency == "replace":
            replace_last[task.name] = row[0]
    for row in rows:
        if len(claimed) >= limit:
            break
        run_id, task_name, trigger = row[0], row[1], row[2]
        task = runtime.tasks.get(task_name)
        if task is None:
            cancelled.append((run_id, "the task no longer exists"))
            continue
        if trigger not in ("manual", "retry") and not task.fires and row[8] == 0:
            skipped.append((run_id, task_name, "task is retired" if task.retired else "task is disabled"))
            continue
        in_progress = busy.get(task_name, 0)
        policy = task.concurrency
        if in_progress and policy == "queue":
            continue
        if in_progress and policy == "skip" and row[8] == 0:
            skipped.append((run_id, task_name, "a run of this task is in progress (concurrency: skip)"))
            continue
        if policy == "replace":
            if replace_last.get(task_name) != run_id:
                cancelled.append((run_id, f"replaced by run {replace_last[task_name]} (concurrency: replace)"))
                continue
            if in_progress:
                replaced.append(task_name)
        claimed.append(Claimed(run_id, task, trigger, row[3], row[4], row[5], row[6],
                               json.loads(row[7]) if row[7] else None, row[8] + 1, row[9], row[10],
                               started_at=now, event=row_to_event(row[11:17]) if row[11] else None))
        busy[task_name] = in_progress + 1
    expires = to_iso(now + timedelta(seconds=lease))
    conn.executemany(
        "UPDATE runs SET status = 'running', attempt = attempt + 1, started_at = coalesce(started_at, ?), "
        "lease_owner = ?, lease_expires = ? WHERE id = ? AND status = 'pending'",
        [(now_text, owner, expires, c.id) for c in claimed])
    conn.executemany(
        "UPDATE runs SET status = 'skipped', finished_at = ?, error = ? WHERE id = ?",
        [(now_text, why, run_id) for run_id, _, why in skipped])
    conn.executemany(
        "INSERT INTO decisions (time, decision, reason, task, run_id) VALUES (?, 'skipped', ?, ?, ?)",
        [(now_text, why, task, run_id) for run_id, task, why in skipped])
    conn.executemany(
        "UPDATE runs SET status = 'cancelled', finished_at = ?, error = ? WHERE id = ?",
        [(now_text, why, run_id) for run_id, why in cancelled])
    to_cancel = []
    claimed_ids = {c.id for c in claimed}
    for task_name in replaced:
        ids = [r[0] for r in conn.execute(
            "SELECT id FROM runs WHERE task = ? AND status = 'running' AND cancel_requested = 0", (task_name,))
            if r[0] not in claimed_ids]
        conn.executemany("UPDATE runs SET cancel_requested = 1 WHERE id = ?", [(i,) for i in ids])
        to_cancel.extend((i, task_name) for i in ids)
    if claimed and runtime.listens("task.started"):
        started = [internal_event("task.started", c, now_text, {"attempt": c.attempt}) for c in claimed]
        insert_internal_events(conn, started, now_text)
    return claimed, to_cancel


def internal_event(type_: str, run: Claimed, now: str, extra: dict) -> tuple:
    data = {"task": run.task.name, "run_id": run.id, "trigger": run.trigger, "depth": run.depth, **extra}
    return (new_id(), type_, data, now)


def insert_internal_events(conn, events: list[tuple], now: str) -> None:
    conn.executemany(
        "INSERT INTO events (id, type, source, data, time, received_at) VALUES (?, ?, ?, ?, ?, ?)",
        [(eid, type_, INTERNAL_SOURCE, json.dumps(data, default=str), time, now)
         for eid, type_, data, time in events])


def record_outcomes(conn, outcomes: list[Outcome], now: datetime, rng, redact,
                    listens=lambda event_type: True) -> list[str]:
    """Write finished attempts: the run's new state, the attempt row, and task.* events.

    Returns the outcomes that ended their run (not retried), with their final status set.
    """
    now_text = to_iso(now)
    attempts, finals, retries, events, retired, ended = [], [], [], [], [], []
    for o in outcomes:
        run = o.run
        output = json.dumps(redact(o.output), default=str) if o.output is not None else None
        error = redact(o.error)
        outcome = o.status
        attempts.append((run.id, run.attempt, to_iso(o.started_at), to_iso(o.finished_at), outcome,
                         error, redact(o.traceback), output, o.duration, o.plugin, o.plugin_version))
        can_retry = outcome in ("failed", "timeout", "interrupted") and o.retryable and run.attempt < run.max_attempts
        if can_retry:
            delay = run.task.retry.delay_after(run.attempt, rng)
            retries.append((to_iso(now + timedelta(seconds=delay)), error, run.id))
            continue
        status = {"timeout": "failed"}.get(outcome, outcome)
        o.final_status = status
        ended.append(o)
        finals.append((status, now_text, error, output, o.duration, o.plugin, o.plugin_version,
                       int(outcome == "interrupted"), run.id))
        extra = {"status": status, "error": error, "duration": o.duration, "attempts": run.attempt}
        if status in ("succeeded", "failed") and listens(f"task.{status}"):
            events.append(internal_event(f"task.{status}", run, now_text, extra))
        if run.task.delete_after_run and status in ("succeeded", "failed"):
            retired.append(run.task.name)
    conn.executemany(
        "INSERT INTO attempts (run_id, number, started_at, finished_at, outcome, error, traceback, output, "
        "duration, plugin, plugin_version) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT(run_id, number) DO NOTHING", attempts)
    conn.executemany(
        "UPDATE runs SET status = 'pending', not_before = ?, error = ?, lease_owner = NULL, "
        "lease_expires = NULL, cancel_requested = 0 WHERE id = ?", retries)
    conn.executemany(
        "UPDATE runs SET status = ?, finished_at = ?, error = ?, output = ?, duration = ?, plugin = ?, "
        "plugin_version = ?, attention = ?, lease_owner = NULL, lease_expires = NULL WHERE id = ?", finals)
    insert_internal_events(conn, events, now_text)
    if retired:
        from taskengine_core.apply import canonical, current_actor

        conn.executemany("UPDATE tasks SET retired_at = ? WHERE name = ? AND retired_at IS NULL",
                         [(now_text, name) for name in retired])
        conn.executemany(
            "INSERT INTO audit (time, actor, action, kind, name, changes, source) VALUES (?, ?, 'retired', 'task', ?, ?, 'engine')",
            [(now_text, current_actor(), name, canonical({"retired_at": {"to": now_text}})) for name in retired])
        conn.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'config_generation'")
    return ended


def renew_leases(conn, owner: str, expires: datetime) -> None:
    conn.execute("UPDATE runs SET lease_expires = ? WHERE lease_owner = ? AND status = 'running'",
                 (to_iso(expires), owner))


def find_orphans(conn, now: datetime, owner: str) -> list[tuple]:
    """Runs left ``running`` by a process that is gone: lease expired, or its pid is dead."""
    rows = conn.execute(
        "SELECT id, task, attempt, max_attempts, lease_owner, lease_expires, started_at, depth, trigger "
        "FROM runs WHERE status = 'running' AND (lease_owner IS NULL OR lease_owner != ?)", (owner,)).fetchall()
    now_text = to_iso(now)
    return [r for r in rows if (r[5] or "") < now_text or owner_is_dead(r[4])]
