"""The life of a run in the database: claimed, finished, retried, interrupted, recovered.

Every function here runs inside the caller's write transaction and takes its connection.
"""

from __future__ import annotations

import itertools
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
from taskengine_core.store import attempts as attempt_store, inbox, runs as run_store
from taskengine_core.store.decisions import insert_decisions
from taskengine_core.store.sql import is_postgres

FINAL = ("succeeded", "failed", "cancelled", "skipped", "interrupted")


_OWNERS = itertools.count(1)


def lease_owner() -> str:
    """``host:pid:start:n`` — enough to tell, after a crash, that the owner is gone. ``start``
    says when the process started (``boot.ticks`` on Linux), so a new process that got the same
    pid (pid 1 after a container restart, say) is not taken for the old one; ``n`` tells apart
    the executors of one process (an engine stopped and started again in it)."""
    started = process_start(os.getpid()) or str(int(datetime.now().timestamp()))
    return f"{socket.gethostname()}:{os.getpid()}:{started}:{next(_OWNERS)}"


def owner_state(owner: str | None) -> str:
    """``dead``, ``alive`` (a live process on this host has its pid and start) or ``unknown``
    (another host)."""
    if not owner:
        return "dead"
    host, _, rest = owner.partition(":")
    pid_text, _, started = rest.partition(":")
    started = started.partition(":")[0]  # after it: which executor of that process
    if host != socket.gethostname() or not pid_text.isdigit():
        return "unknown"
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return "dead"
    except PermissionError:
        pass
    if "." in started:  # recorded with a process start: the pid must still be that process
        now_started = process_start(int(pid_text))
        if now_started is not None and now_started != started:
            return "dead"
    return "alive"


def process_start(pid: int) -> str | None:
    """When process ``pid`` started, as ``BOOT.TICKS`` (the boot's id and the start time in
    clock ticks since boot, from /proc); None where /proc cannot tell."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
        with open("/proc/sys/kernel/random/boot_id") as boot:
            boot_id = boot.read().strip().replace("-", "")[:12]
        return f"{boot_id}.{int(fields[19])}"  # field 22 of stat; fields[0] here is field 3
    except (OSError, IndexError, ValueError):
        return None


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
    stripped: bool = False  # recording it failed once: output, error and traceback were dropped
    attention: bool = False  # an operator must act (a configuration error): never retried
    # (writer, item) pairs the action asked to commit with this outcome (taskengine_core.outcome_writes)
    writes: list | None = None

    # seconds, from the two times (read for the attempt row, the run row, the claim pace, the hook)
    duration: float = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.duration = (self.finished_at - self.started_at).total_seconds()


# concurrency policies that allow one run of a task at a time
SINGLE = ("queue", "skip", "replace")


def claim_due(conn, runtime: Runtime, now: datetime, owner: str, lease: float, limit: int,
              only: str | None = None, extra_busy: dict[str, int] | None = None
              ) -> tuple[list[Claimed], list[tuple]]:
    """Claim up to ``limit`` due runs (or just run ``only``), honouring each task's concurrency
    policy. Returns the claimed runs and the running runs to cancel (policy ``replace``).

    Safe with several engines on one database: the due runs are locked as they are read
    (others skip them), a task limited to one run is locked before its running runs are
    counted, and a run counts as claimed only if marking it running changed its row.
    """
    if limit <= 0:
        return [], []
    now_text = to_iso(now)
    busy = run_store.running_counts(conn)
    for task_name, count in (extra_busy or {}).items():  # abandoned (timed-out) actions still running
        busy[task_name] = busy.get(task_name, 0) + count
    # a busy queue task's waiting runs are left out in SQL, so they cannot crowd out other tasks
    waiting = [t for t in busy if (runtime.tasks.get(t) and runtime.tasks[t].concurrency == "queue")]
    # rows read beyond ``limit`` only fill in for runs this claim may pass over
    read = limit * 4 if _passes_over(runtime) else limit
    rows = run_store.due(conn, now_text, read, exclude_tasks=waiting, only=only)
    if not rows:
        return [], []
    limited = sorted({row[1] for row in rows if runtime.tasks.get(row[1]) is not None
                      and runtime.tasks[row[1]].concurrency in SINGLE})
    if limited and is_postgres(conn):
        # another engine may have started runs of these tasks since ``busy`` was read: count
        # again under each task's lock, which holds until this transaction commits
        run_store.lock_tasks(conn, limited)
        fresh = run_store.running_counts(conn, limited)
        for task_name in limited:
            busy[task_name] = fresh.get(task_name, 0) + (extra_busy or {}).get(task_name, 0)
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
    started = run_store.start(conn, [c.id for c in claimed], now_text, owner, expires)
    claimed = [c for c in claimed if c.id in started]  # another engine's claim won the rest
    run_store.skip(conn, [(run_id, why) for run_id, _, why in skipped], now_text)
    insert_decisions(conn, ("time", "decision", "reason", "task", "run_id"),
                     [(now_text, "skipped", why, task, run_id) for run_id, task, why in skipped])
    run_store.cancel(conn, cancelled, now_text)
    to_cancel = []
    claimed_ids = {c.id for c in claimed}
    for task_name in replaced:
        to_cancel.extend((i, task_name) for i in run_store.request_cancel(conn, task_name, claimed_ids))
    if claimed and runtime.listens("task.started"):
        started_events = [internal_event("task.started", c, now_text, {"attempt": c.attempt}) for c in claimed]
        insert_internal_events(conn, started_events, now_text)
    return claimed, to_cancel


_PASSES_OVER: list = [(None, True)]  # (runtime, answer) for the last runtime asked about


def _passes_over(runtime: Runtime) -> bool:
    """Whether a claim may pass over a due run of this configuration's tasks: a task limited to
    one run at a time, or one that triggers do not start (disabled, retired). When none can, the
    first ``limit`` due runs are all claimed (a run of a task no longer defined is cancelled,
    and the next claim goes on from there). Answered once per configuration snapshot."""
    known, answer = _PASSES_OVER[0]  # one read: engines in other threads may replace it
    if known is not runtime:
        answer = any(task.concurrency in SINGLE or not task.fires for task in runtime.tasks.values())
        _PASSES_OVER[0] = (runtime, answer)
    return answer


def internal_event(type_: str, run: Claimed, now: str, extra: dict) -> tuple:
    data = {"task": run.task.name, "run_id": run.id, "trigger": run.trigger, "depth": run.depth, **extra}
    return (new_id(), type_, data, now)


def insert_internal_events(conn, events: list[tuple], now: str) -> None:
    inbox.insert_internal(conn, [(eid, type_, INTERNAL_SOURCE, json.dumps(data, default=str), time, now)
                                 for eid, type_, data, time in events])


def record_outcomes(conn, outcomes: list[Outcome], now: datetime, rng, redact,
                    listens=lambda event_type: True) -> list[Outcome]:
    """Write finished attempts: the attempt rows, each run's new state, and task.* events.

    A run's row changes only if it is still ``running`` the attempt reported on, so a late or
    doubled report (a timed-out action that returns after all) changes nothing. Returns the
    outcomes that ended their run, with ``final_status`` set.
    """
    now_text = to_iso(now)
    for o in outcomes:
        if o.output is not None:
            o.output = redact(o.output)
        if o.error is not None or o.traceback is not None:
            o.error, o.traceback = _storable(redact(o.error)), _storable(redact(o.traceback))
    output_text = {id(o): _json(o.output) for o in outcomes}  # once, for the attempt and the run row
    attempt_store.insert(conn, [(o.run.id, o.run.attempt, to_iso(o.started_at), to_iso(o.finished_at), o.status,
                                 o.error, o.traceback, output_text[id(o)], o.duration, o.plugin, o.plugin_version)
                                for o in outcomes])
    ending = []  # (outcome, status)
    for o in outcomes:
        run = o.run
        if (o.status in ("failed", "timeout", "interrupted") and o.retryable and not o.attention
                and run.attempt < run.max_attempts):
            delay = run.task.retry.delay_after(run.attempt, rng)
            run_store.retry(conn, run.id, run.attempt, to_iso(now + timedelta(seconds=delay)), o.error)
            continue
        ending.append((o, "failed" if o.status == "timeout" else o.status))
    finished = run_store.finish(conn, [
        (o.run.id, o.run.attempt, status, o.error, output_text[id(o)], o.duration, o.plugin, o.plugin_version,
         status == "interrupted" or o.attention or _kept_for_attention(o, status)) for o, status in ending], now_text)
    ended = []
    for o, status in ending:
        if o.run.id in finished:
            finished.discard(o.run.id)  # the same run reported twice in one batch ends once
            o.final_status = status
            ended.append(o)
    done = [o for o in ended if o.final_status in ("succeeded", "failed")]
    insert_internal_events(conn, [
        internal_event(f"task.{o.final_status}", o.run, now_text, {
            "status": o.final_status, "error": o.error, "duration": o.duration, "attempts": o.run.attempt})
        for o in done if listens(f"task.{o.final_status}")], now_text)
    retire(conn, [o.run.task.name for o in done if o.run.task.delete_after_run and o.final_status == "succeeded"],
           now_text)
    kept = [o for o in ended if _kept_for_attention(o, o.final_status)]
    insert_decisions(conn, ("time", "decision", "reason", "task", "run_id"), [
        (now_text, "attention", "delete_after_run: the task is not retired because this run "
         f"{'failed' if o.final_status == 'failed' else 'was interrupted'}; fix "
         f"the cause and run it by hand ('taskengine tasks run {o.run.task.name}'): it is retired "
         "after its first successful run", o.run.task.name, o.run.id) for o in kept])
    return ended


def _kept_for_attention(o: Outcome, status: str | None) -> bool:
    """A one-shot task (``delete_after_run``) whose run ended without success stays active and
    its run is flagged: its trigger will most likely not come again."""
    return bool(o.run.task.delete_after_run) and status in ("failed", "interrupted")


def retire(conn, names: list[str], now_text: str) -> None:
    """``delete_after_run``: retire tasks after their first successful run, audited."""
    if not names:
        return
    from taskengine_core.apply import audit_rows, bump_generation

    run_store.retire_tasks(conn, names, now_text)
    audit_rows(conn, [("retired", "task", name, {"retired_at": {"to": now_text}}) for name in names],
               now_text, source="engine")
    bump_generation(conn)


def _storable(text: str | None) -> str | None:
    """``text`` with lone surrogates (a file name read with ``surrogateescape``, say) spelled
    as escapes: SQLite cannot bind them, and one such error would keep its run unrecorded."""
    if text is None:
        return None
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _json(value: Any) -> str | None:
    return json.dumps(value, default=str) if value is not None else None


def renew_leases(conn, owner: str, expires: datetime) -> None:
    run_store.renew_leases(conn, owner, to_iso(expires))


def find_orphans(conn, now: datetime, owner: str, lease: float) -> list[tuple]:
    """Runs left ``running`` by a process that is gone.

    On a database shared across machines (PostgreSQL) only the lease decides: a run whose lease
    expired is any node's to recover (a live node renews its leases), and the rows are locked so
    two nodes never recover the same run. On SQLite (one machine) the pid decides for owners on
    this host (a live owner whose loop stalled keeps its runs); elsewhere an expired lease does.
    A lease expired for ten lease periods counts even for a live pid, which by then is most
    likely reused."""
    if is_postgres(conn):
        return run_store.claim_expired(conn, owner, to_iso(now))
    rows = run_store.running_of_others(conn, owner)
    expired, long_expired = to_iso(now), to_iso(now - timedelta(seconds=10 * lease))
    orphans = []
    for row in rows:
        state, expires = owner_state(row[4]), row[5] or ""
        if state == "dead" or (state == "unknown" and expires < expired) or expires < long_expired:
            orphans.append(row)
    return orphans
