"""The reads behind ``GET /healthz``: each served by a partial index and bounded, so the check
costs the same at 250,000 runs as at ten."""

from __future__ import annotations

import os
import sqlite3
from urllib.parse import quote

from taskengine_core.store.target import parse_target

COUNT_CAP = 10_000  # counts stop here: the check stays constant-time however long a backlog grows


def open_reader(target, timeout: float):
    """A connection of the health check's own, off the write path, whose reads give up after
    ``timeout`` seconds. SQLite: the file opened read-only, with that busy timeout. PostgreSQL:
    an ordinary connection (in autocommit: no transaction held between checks) with that
    statement timeout."""
    parsed = parse_target(target)
    if parsed.kind == "postgresql":
        from taskengine_core.store.postgres.connection import PgConnection, connect

        conn = PgConnection(connect(parsed.url or "", application_name="taskengine-health"))
        conn.execute(f"SET statement_timeout = {max(1, int(timeout * 1000))}")
        return conn
    path = quote(os.path.abspath(parsed.path))
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=timeout, check_same_thread=False,
                           isolation_level=None)


def read_errors() -> tuple[type[BaseException], ...]:
    """What a failed health read raises, on either backend."""
    try:
        import psycopg
    except ImportError:
        return (sqlite3.Error,)
    return (sqlite3.Error, psycopg.Error)


def health_counts(conn, now: str) -> dict:
    """Inbox backlog, pending and running runs (each at most :data:`COUNT_CAP`), when the oldest
    waiting event arrived, and whether a pending run is due at ``now`` (ISO 8601 UTC)."""

    def count(where: str) -> int:
        return conn.execute(f"SELECT count(*) FROM (SELECT 1 FROM {where} LIMIT {COUNT_CAP}) AS capped").fetchone()[0]

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
