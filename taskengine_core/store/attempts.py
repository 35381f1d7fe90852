"""Attempts: one row per try of a run, written once (a doubled report changes nothing)."""

from __future__ import annotations

ATTEMPT_COLUMNS = ("run_id", "number", "started_at", "finished_at", "outcome", "error", "traceback", "output",
                   "duration", "plugin", "plugin_version")


def insert(conn, rows: list[tuple]) -> None:
    """Attempt rows, each the values of :data:`ATTEMPT_COLUMNS`; one already recorded for its
    (run, number) is left as it is."""
    if rows:
        conn.executemany(
            f"INSERT INTO attempts ({', '.join(ATTEMPT_COLUMNS)}) VALUES ({', '.join('?' * len(ATTEMPT_COLUMNS))}) "
            "ON CONFLICT(run_id, number) DO NOTHING", rows)
