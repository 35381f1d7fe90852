"""Task logs as ``taskengine logs`` reads them: runs newest first, one run with its attempts
and decisions, an event with what was decided about it."""

from __future__ import annotations

from taskengine_core.store.sql import rows_as_dicts

FINAL_RUN_STATUSES = ("succeeded", "failed", "cancelled", "skipped", "interrupted")
# word for word the WHERE of the partial indexes runs_by_status and runs_expiry (SQLite uses a
# partial index only when the query's WHERE holds that very term)
FINAL_RUN = "status IN ('succeeded', 'failed', 'cancelled', 'skipped', 'interrupted')"
RUN_LIST_COLUMNS = ("id, task, status, trigger, event_id, rule, schedule, slot, created_at, "
                    "not_before, started_at, finished_at, attempt, max_attempts, duration, error, attention")
EVENT_COLUMNS = "id, type, source, source_id, data, time"


def list_runs(conn, *, task: str | None = None, status: str | None = None, since: str | None = None,
              limit: int = 50) -> list[dict]:
    """Runs newest first (of ``task``, in ``status``, created at or after ``since``)."""
    clauses, params = [], []
    for column, value in (("task", task), ("status", status)):
        if value:
            clauses.append(f"{column} = ?")
            params.append(value)
    if since is not None:
        clauses.append("created_at >= ?")
        params.append(since)
    if status in FINAL_RUN_STATUSES:  # the very term of the partial index runs_by_status
        clauses.append(FINAL_RUN)
    where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
    return rows_as_dicts(conn.execute(
        f"SELECT {RUN_LIST_COLUMNS} FROM runs{where} ORDER BY created_at DESC, rowid DESC LIMIT ?",
        [*params, limit]))


def run(conn, run_id: str) -> dict | None:
    found = rows_as_dicts(conn.execute("SELECT * FROM runs WHERE id = ?", (run_id,)))
    if not found:
        return None
    found[0].pop("rowid", None)  # PostgreSQL's identity column: not part of a run
    return found[0]


def attempts(conn, run_id: str) -> list[dict]:
    return rows_as_dicts(conn.execute("SELECT * FROM attempts WHERE run_id = ? ORDER BY number", (run_id,)))


def run_decisions(conn, run_id: str) -> list[dict]:
    return rows_as_dicts(conn.execute(
        "SELECT time, decision, reason, rule, schedule FROM decisions WHERE run_id = ? ORDER BY id", (run_id,)))


def event_row(conn, event_id: str) -> tuple | None:
    """``(id, type, source, source_id, data, time)`` of an event (what ``row_to_event`` reads)."""
    return conn.execute(f"SELECT {EVENT_COLUMNS} FROM events WHERE id = ?", (event_id,)).fetchone()


def event_outcome(conn, event_id: str) -> tuple | None:
    """The event's row as :func:`event_row` gives it, then ``processed_at`` and ``duplicate_of``."""
    return conn.execute(f"SELECT {EVENT_COLUMNS}, processed_at, duplicate_of FROM events WHERE id = ?",
                        (event_id,)).fetchone()


def duplicate_of(conn, event_id: str) -> str | None:
    """The id of the event this one repeats (same source and id), None when it is new."""
    row = conn.execute("SELECT duplicate_of FROM events WHERE id = ?", (event_id,)).fetchone()
    return row[0] if row else None


def event_decisions(conn, event_id: str) -> list[dict]:
    return rows_as_dicts(conn.execute(
        "SELECT time, decision, reason, rule, task, run_id FROM decisions WHERE event_id = ? ORDER BY id",
        (event_id,)))
