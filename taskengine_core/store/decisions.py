"""Decision rows written outside the evaluator and executor: notifications, pauses, blackouts."""

from __future__ import annotations


def record_decision(conn, time: str, decision: str, reason: str, *, task: str | None = None,
                    run_id: str | None = None, event_id: str | None = None,
                    schedule: str | None = None) -> None:
    """One decision row (inside the caller's transaction, or as its own statement)."""
    conn.execute("INSERT INTO decisions (time, decision, reason, task, run_id, event_id, schedule) "
                 "VALUES (?, ?, ?, ?, ?, ?, ?)", (time, decision, reason, task, run_id, event_id, schedule))


_COLUMNS = ("time", "decision", "reason", "event_id", "rule", "schedule", "slot", "task", "run_id")


def insert_decisions(conn, columns: tuple[str, ...], rows: list[tuple]) -> None:
    """Many decision rows, each the values of ``columns`` (names of the decisions table)."""
    if not rows:
        return
    unknown = set(columns) - set(_COLUMNS)
    if unknown:
        raise ValueError(f"not a column of decisions: {sorted(unknown)}")
    conn.executemany(f"INSERT INTO decisions ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
                     rows)
