"""The reads behind ``GET /healthz``: each served by a partial index and bounded, so the check
costs the same at 250,000 runs as at ten."""

from __future__ import annotations

import sqlite3

COUNT_CAP = 10_000  # counts stop here: the check stays constant-time however long a backlog grows


def health_counts(conn: sqlite3.Connection, now: str) -> dict:
    """Inbox backlog, pending and running runs (each at most :data:`COUNT_CAP`), when the oldest
    waiting event arrived, and whether a pending run is due at ``now`` (ISO 8601 UTC)."""

    def count(where: str) -> int:
        return conn.execute(f"SELECT count(*) FROM (SELECT 1 FROM {where} LIMIT {COUNT_CAP})").fetchone()[0]

    oldest = conn.execute(
        "SELECT received_at FROM events WHERE processed_at IS NULL ORDER BY seq LIMIT 1").fetchone()
    next_due = conn.execute("SELECT min(not_before) FROM runs WHERE status = 'pending'").fetchone()[0]
    return {
        "inbox": count("events WHERE processed_at IS NULL"),
        "runs_pending": count("runs WHERE status = 'pending'"),
        "runs_running": count("runs WHERE status = 'running'"),
        "oldest_waiting_event": oldest[0] if oldest else None,
        "run_due": next_due is not None and next_due <= now,
    }
