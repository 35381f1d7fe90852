"""Retention: each function deletes (or finds) one bounded batch through an index, inside the
caller's short write transaction (see :class:`taskengine_core.task_logs.Pruner`). Deleting is
idempotent, so two engines pruning one PostgreSQL database at once only share the work."""

from __future__ import annotations

from taskengine_core.store.logs import FINAL_RUN
from taskengine_core.store.sql import in_values, indexed_by


def delete_finished_runs(conn, cutoff: str, limit: int) -> list[str]:
    """Delete up to ``limit`` finished runs that ended before ``cutoff`` (their attempts go
    with them: ON DELETE CASCADE), and the decisions about them; returns their ids."""
    ids = [r[0] for r in conn.execute(
        f"DELETE FROM runs WHERE rowid IN (SELECT rowid FROM runs{indexed_by(conn, 'runs_expiry')} WHERE "
        f"coalesce(finished_at, created_at) < ? AND {FINAL_RUN} LIMIT ?) RETURNING id",
        (cutoff, limit))]
    if ids:
        clause, params = in_values(conn, "run_id", ids)
        conn.execute(f"DELETE FROM decisions WHERE {clause}", params)
    return ids


def decisions_before(conn, cutoff: str, after: tuple[str, int], limit: int) -> list[tuple]:
    """The next ``limit`` decisions before ``cutoff`` after the ``(time, id)`` cursor, in index
    order: ``(time, id, deletable)``; deletable when its run is gone or it never had one."""
    last_time, last_id = after
    return conn.execute(
        "SELECT time, id, run_id IS NULL OR NOT EXISTS (SELECT 1 FROM runs WHERE runs.id = decisions.run_id) "
        "FROM decisions WHERE time >= ? AND time < ? AND (time > ? OR id > ?) ORDER BY time, id LIMIT ?",
        (last_time, cutoff, last_time, last_id, limit)).fetchall()


def delete_decisions(conn, ids: list[int]) -> None:
    if ids:
        clause, params = in_values(conn, "id", ids, cast="bigint")
        conn.execute(f"DELETE FROM decisions WHERE {clause}", params)


def events_before(conn, cutoff: str, after: tuple[str, int], limit: int) -> list[tuple]:
    """The next ``limit`` events received before ``cutoff`` after the ``(received_at, seq)``
    cursor: ``(received_at, seq, deletable)``; deletable when processed and no run refers to it."""
    last_time, last_seq = after
    return conn.execute(
        "SELECT received_at, seq, processed_at IS NOT NULL AND NOT EXISTS "
        "(SELECT 1 FROM runs WHERE runs.event_id = events.id) FROM events "
        "WHERE received_at >= ? AND received_at < ? AND (received_at > ? OR seq > ?) "
        "ORDER BY received_at, seq LIMIT ?",
        (last_time, cutoff, last_time, last_seq, limit)).fetchall()


def delete_events(conn, seqs: list[int]) -> None:
    if seqs:
        clause, params = in_values(conn, "seq", seqs, cast="bigint")
        conn.execute(f"DELETE FROM events WHERE {clause}", params)


def delete_ended_throttles(conn, cutoff: str, limit: int) -> int:
    """Delete up to ``limit`` throttle windows that ended before ``cutoff``; returns how many."""
    return conn.execute("DELETE FROM throttles WHERE (rule, key) IN (SELECT rule, key FROM throttles "
                        "WHERE until < ? LIMIT ?)", (cutoff, limit)).rowcount


def delete_old_slots(conn, cutoff: str, limit: int) -> int:
    """Delete up to ``limit`` schedule slots due before ``cutoff`` (slot keys only guard against
    firing again, and next fire times never move back); returns how many."""
    return conn.execute("DELETE FROM schedule_slots WHERE (schedule, due) IN (SELECT schedule, due "
                        "FROM schedule_slots WHERE due < ? LIMIT ?)", (cutoff, limit)).rowcount
