"""Runs: inserted, claimed, finished, retried, leased and recovered.

Claims stay correct with several writers (engines sharing one PostgreSQL database):
- due runs are read with ``FOR UPDATE SKIP LOCKED``: rows another engine is claiming are skipped;
- a run is started only by an ``UPDATE ... WHERE status = 'pending'`` that changed its row;
- a task limited to one run at a time (concurrency ``queue``, ``skip``, ``replace``) is locked
  for the rest of the transaction (:func:`lock_tasks`) before its running runs are counted, so
  two engines cannot both start one.
On SQLite the write transaction (``BEGIN IMMEDIATE``) already serialises all of that.
"""

from __future__ import annotations

from taskengine_core.store.sql import in_values, indexed_by, is_postgres

RUN_COLUMNS = ("id", "task", "status", "trigger", "event_id", "rule", "schedule", "slot", "params",
               "not_before", "created_at", "max_attempts", "depth")
# the triggering event comes with the claim, so workers need no query of their own
CLAIM_COLUMNS = ("r.id, r.task, r.trigger, r.event_id, r.rule, r.schedule, r.slot, r.params, r.attempt, "
                 "r.max_attempts, r.depth, e.id, e.type, e.source, e.source_id, e.data, e.time")
_CLAIM_FROM = "runs r LEFT JOIN events e ON e.id = r.event_id"


def insert(conn, rows: list[tuple]) -> None:
    """New runs, each the values of :data:`RUN_COLUMNS`."""
    if rows:
        conn.executemany(f"INSERT INTO runs ({', '.join(RUN_COLUMNS)}) VALUES ({', '.join('?' * len(RUN_COLUMNS))})",
                         rows)


def status(conn, run_id: str) -> str | None:
    row = conn.execute("SELECT status FROM runs WHERE id = ?", (run_id,)).fetchone()
    return row[0] if row else None


def count_by_status(conn) -> dict[str, int]:
    """How many runs there are in each status."""
    return dict(conn.execute("SELECT status, count(*) FROM runs GROUP BY status").fetchall())


def next_due(conn) -> str | None:
    """When the earliest pending run is due (ISO 8601), None when none is pending."""
    return conn.execute("SELECT min(not_before) FROM runs WHERE status = 'pending'").fetchone()[0]


def anything_due(conn, now: str, only: str | None = None) -> bool:
    """Whether a pending run is due at ``now`` (with ``only``: whether that run is)."""
    if only is not None:
        sql, params = "SELECT 1 FROM runs WHERE id = ? AND status = 'pending' AND not_before <= ?", (only, now)
    else:
        sql, params = "SELECT 1 FROM runs WHERE status = 'pending' AND not_before <= ? LIMIT 1", (now,)
    return conn.execute(sql, params).fetchone() is not None


def limit_lock_wait(conn, seconds: float | None) -> None:
    """How long this connection's writes wait for another writer's lock (``None``: the usual
    wait again); at stop, recording the last outcomes must not outlast the grace by much."""
    if is_postgres(conn):
        from taskengine_core.store.postgres.store import LOCK_TIMEOUT_MS

        conn.execute(f"SET lock_timeout = {LOCK_TIMEOUT_MS if seconds is None else int(seconds * 1000)}")
        return
    from taskengine_core.store.db import BUSY_TIMEOUT_MS

    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS if seconds is None else int(seconds * 1000)}")


# -- claiming ------------------------------------------------------------------------------------


def running_counts(conn, tasks: list[str] | None = None) -> dict[str, int]:
    """How many runs of each task are running (of ``tasks`` only, when given)."""
    if tasks is None:
        return dict(conn.execute("SELECT task, count(*) FROM runs WHERE status = 'running' GROUP BY task").fetchall())
    if not tasks:
        return {}
    where, params = in_values(conn, "task", tasks)
    return dict(conn.execute(f"SELECT task, count(*) FROM runs WHERE status = 'running' AND {where} GROUP BY task",
                             params).fetchall())


def lock_tasks(conn, tasks: list[str]) -> None:
    """Hold each task's claim lock until the transaction ends (PostgreSQL: one transaction-scoped
    advisory lock per task, taken in name order so two engines cannot deadlock). On SQLite the
    write transaction already excludes every other writer."""
    if is_postgres(conn):
        for task in sorted(set(tasks)):
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(?))", (task,))


def due(conn, now: str, limit: int, *, exclude_tasks: list[str] = (), only: str | None = None) -> list[tuple]:
    """Pending runs due at ``now`` with their triggering event (:data:`CLAIM_COLUMNS`), oldest
    first, at most ``limit``, runs of ``exclude_tasks`` left out; or just the run ``only``. On
    PostgreSQL the rows stay locked until the transaction ends, and rows another transaction
    holds are skipped."""
    lock = " FOR UPDATE OF r SKIP LOCKED" if is_postgres(conn) else ""
    if only is not None:
        return conn.execute(f"SELECT {CLAIM_COLUMNS} FROM {_CLAIM_FROM} WHERE r.status = 'pending' "
                            f"AND r.id = ? AND r.not_before <= ?{lock}", (only, now)).fetchall()
    exclude, params = "", []
    if exclude_tasks:
        where, params = in_values(conn, "r.task", list(exclude_tasks))
        exclude = f" AND NOT ({where})"
    return conn.execute(
        f"SELECT {CLAIM_COLUMNS} FROM {_CLAIM_FROM} WHERE r.status = 'pending' AND r.not_before <= ?"
        f"{exclude} ORDER BY r.not_before, r.rowid LIMIT ?{lock}", (now, *params, limit)).fetchall()


def start(conn, run_ids: list[str], now: str, owner: str, lease_expires: str) -> set[str]:
    """Mark these runs running under ``owner``'s lease (a new attempt each); returns the ids
    that were still pending and so are now this owner's. Run only what it returns."""
    if not run_ids:
        return set()
    where, params = in_values(conn, "id", run_ids)
    return {row[0] for row in conn.execute(
        "UPDATE runs SET status = 'running', attempt = attempt + 1, started_at = coalesce(started_at, ?), "
        f"lease_owner = ?, lease_expires = ? WHERE status = 'pending' AND {where} RETURNING id",
        (now, owner, lease_expires, *params)).fetchall()}


def release(conn, run_ids: list[str], owner: str) -> set[str]:
    """Put runs ``owner`` claimed but never started back to pending (their attempt undone);
    returns the ids that changed."""
    if not run_ids:
        return set()
    where, params = in_values(conn, "id", run_ids)
    return {row[0] for row in conn.execute(
        "UPDATE runs SET status = 'pending', attempt = attempt - 1, "
        "started_at = CASE WHEN attempt = 1 THEN NULL ELSE started_at END, lease_owner = NULL, "
        f"lease_expires = NULL WHERE status = 'running' AND lease_owner = ? AND {where} RETURNING id",
        (owner, *params)).fetchall()}


def skip(conn, runs: list[tuple[str, str]], now: str) -> None:
    """Mark pending runs skipped: ``(run id, why)`` each."""
    if runs:
        conn.executemany("UPDATE runs SET status = 'skipped', finished_at = ?, error = ? "
                         "WHERE id = ? AND status = 'pending'", [(now, why, run_id) for run_id, why in runs])


def cancel(conn, runs: list[tuple[str, str]], now: str) -> None:
    """Mark pending runs cancelled: ``(run id, why)`` each."""
    if runs:
        conn.executemany("UPDATE runs SET status = 'cancelled', finished_at = ?, error = ? "
                         "WHERE id = ? AND status = 'pending'", [(now, why, run_id) for run_id, why in runs])


def request_cancel(conn, task: str, keep: set[str]) -> list[str]:
    """Ask every running run of ``task`` but those in ``keep`` to stop (``cancel_requested``);
    returns the ids newly asked."""
    # PostgreSQL: a row another engine holds (finishing that run, say) is skipped, not waited
    # for: this transaction holds the task's lock, and waiting here could close a deadlock
    lock = " FOR UPDATE SKIP LOCKED" if is_postgres(conn) else ""
    ids = [r[0] for r in conn.execute(
        f"SELECT id FROM runs{indexed_by(conn, 'runs_running')} WHERE task = ? AND status = 'running' "
        f"AND cancel_requested = 0{lock}", (task,)) if r[0] not in keep]
    if ids:
        conn.executemany("UPDATE runs SET cancel_requested = 1 WHERE id = ?", [(i,) for i in ids])
    return ids


def cancel_requested(conn, owner: str) -> list[str]:
    """Ids of ``owner``'s running runs that were asked to stop."""
    return [r[0] for r in conn.execute(
        "SELECT id FROM runs WHERE status = 'running' AND cancel_requested = 1 AND lease_owner = ?", (owner,))]


# -- finishing -----------------------------------------------------------------------------------


def retry(conn, run_id: str, attempt: int, not_before: str, error: str | None) -> bool:
    """Put a running run back to pending for another attempt, if it is still at ``attempt``."""
    return conn.execute(
        "UPDATE runs SET status = 'pending', not_before = ?, error = ?, lease_owner = NULL, "
        "lease_expires = NULL, cancel_requested = 0 WHERE id = ? AND status = 'running' AND attempt = ?",
        (not_before, error, run_id, attempt)).rowcount > 0


FINISH_FIELDS = ("id", "attempt", "status", "error", "output", "duration", "plugin", "plugin_version", "attention")
_FINISH_TYPES = ("text", "integer", "text", "text", "text", "double precision", "text", "text", "integer")


def finish(conn, runs: list[tuple], now: str) -> set[str]:
    """End running runs: :data:`FINISH_FIELDS` each. A run changes only if it is still running
    the attempt reported on (a late or doubled report changes nothing); returns the ids that
    changed. PostgreSQL: one statement for the batch (a round trip per run would dominate)."""
    if not runs:
        return set()
    if is_postgres(conn):
        columns = ", ".join(f"?::{kind}[]" for kind in _FINISH_TYPES)
        values = [list(column) for column in zip(*[
            (*run[:5], None if run[5] is None else float(run[5]), run[6], run[7], int(run[8])) for run in runs])]
        return {row[0] for row in conn.execute(
            "UPDATE runs SET status = v.status, finished_at = ?, error = v.error, output = v.output, "
            "duration = v.duration, plugin = v.plugin, plugin_version = v.plugin_version, attention = v.attention, "
            f"lease_owner = NULL, lease_expires = NULL FROM unnest({columns}) AS v({', '.join(FINISH_FIELDS)}) "
            "WHERE runs.id = v.id AND runs.status = 'running' AND runs.attempt = v.attempt RETURNING runs.id",
            (now, *values)).fetchall()}
    rows = [(status, now, error, output, duration, plugin, plugin_version, int(attention), run_id, attempt)
            for run_id, attempt, status, error, output, duration, plugin, plugin_version, attention in runs]
    # the usual batch: every run is still running the attempt reported on, and one statement
    # changes one row each (SQLite's change count says so); else undo it and go run by run
    before = getattr(conn, "total_changes", None)
    if before is not None and len({row[8] for row in rows}) == len(rows):
        conn.execute("SAVEPOINT finish_runs")
        conn.executemany(_FINISH_ONE, rows)
        if conn.total_changes - before == len(rows):
            conn.execute("RELEASE finish_runs")
            return {row[8] for row in rows}
        conn.execute("ROLLBACK TO finish_runs")
        conn.execute("RELEASE finish_runs")
    finished = set()
    for run_id, attempt, status, error, output, duration, plugin, plugin_version, attention in runs:
        if conn.execute(
                "UPDATE runs SET status = ?, finished_at = ?, error = ?, output = ?, duration = ?, plugin = ?, "
                "plugin_version = ?, attention = ?, lease_owner = NULL, lease_expires = NULL "
                "WHERE id = ? AND status = 'running' AND attempt = ?",
                (status, now, error, output, duration, plugin, plugin_version, int(attention), run_id,
                 attempt)).rowcount:
            finished.add(run_id)
    return finished


_FINISH_ONE = ("UPDATE runs SET status = ?, finished_at = ?, error = ?, output = ?, duration = ?, plugin = ?, "
               "plugin_version = ?, attention = ?, lease_owner = NULL, lease_expires = NULL "
               "WHERE id = ? AND status = 'running' AND attempt = ?")


def interrupt(conn, run_id: str, now: str, error: str) -> bool:
    """End a running run as interrupted, flagged for attention (nothing can retry it)."""
    return conn.execute("UPDATE runs SET status = 'interrupted', finished_at = ?, attention = 1, error = ? "
                        "WHERE id = ? AND status = 'running'", (now, error, run_id)).rowcount > 0


def retire_tasks(conn, names: list[str], now: str) -> None:
    """``delete_after_run``: mark these tasks retired (those not retired yet)."""
    conn.executemany("UPDATE tasks SET retired_at = ? WHERE name = ? AND retired_at IS NULL",
                     [(now, name) for name in names])


# -- leases and recovery -------------------------------------------------------------------------


def renew_leases(conn, owner: str, expires: str) -> int:
    """Extend the lease of every run ``owner`` runs; how many."""
    return conn.execute("UPDATE runs SET lease_expires = ? WHERE lease_owner = ? AND status = 'running'",
                        (expires, owner)).rowcount


_ORPHAN_COLUMNS = "id, task, attempt, max_attempts, lease_owner, lease_expires, started_at, depth, trigger"


def running_of_others(conn, owner: str) -> list[tuple]:
    """Running runs not held by ``owner`` (SQLite: the caller decides by pid and lease which are
    orphans): ``(id, task, attempt, max_attempts, lease_owner, lease_expires, started_at,
    depth, trigger)``."""
    return conn.execute(f"SELECT {_ORPHAN_COLUMNS} FROM runs WHERE status = 'running' "
                        "AND (lease_owner IS NULL OR lease_owner != ?)", (owner,)).fetchall()


def claim_expired(conn, owner: str, now: str) -> list[tuple]:
    """Running runs of other owners whose lease has expired (or that have none), locked for this
    transaction; rows another engine is recovering right now are skipped. Columns as
    :func:`running_of_others`. For databases shared across machines, where a pid means nothing."""
    lock = " FOR UPDATE SKIP LOCKED" if is_postgres(conn) else ""
    return conn.execute(f"SELECT {_ORPHAN_COLUMNS} FROM runs WHERE status = 'running' "
                        "AND (lease_owner IS NULL OR lease_owner != ?) "
                        f"AND (lease_expires IS NULL OR lease_expires < ?){lock}", (owner, now)).fetchall()
