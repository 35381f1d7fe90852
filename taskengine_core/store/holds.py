"""The SQL of holds: the pause (a row of ``meta``) and runs held back by blackout windows."""

from __future__ import annotations

import json

from taskengine_core.store.sql import is_postgres

PAUSE_KEY = "pause"


def read_pause(conn) -> dict | None:
    """``{"since", "until", "reason", "by"}`` while paused, else None."""
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (PAUSE_KEY,)).fetchone()
    return json.loads(row[0]) if row else None


def write_pause(conn, pause: dict | None) -> bool:
    """Set the pause (None: end it); whether a row changed (ending it: whether this transaction
    did, and not another engine's just before)."""
    if pause is None:
        return conn.execute("DELETE FROM meta WHERE key = ?", (PAUSE_KEY,)).rowcount > 0
    return conn.execute("INSERT INTO meta (key, value) VALUES (?, ?) "
                        "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                        (PAUSE_KEY, json.dumps(pause, sort_keys=True))).rowcount > 0


def due_runs(conn, now_text: str, limit: int) -> list[tuple[str, str, int]]:
    """``(id, task, attempt)`` of pending runs due by now, not run by hand, oldest first. On
    PostgreSQL they stay locked until the transaction ends; runs another engine holds are skipped."""
    lock = " FOR UPDATE SKIP LOCKED" if is_postgres(conn) else ""
    return conn.execute(
        "SELECT id, task, attempt FROM runs WHERE status = 'pending' AND not_before <= ? AND trigger != 'manual' "
        f"ORDER BY not_before, rowid LIMIT ?{lock}", (now_text, limit)).fetchall()


def defer_run(conn, run_id: str, not_before: str) -> bool:
    """Move a pending run's due time; whether it was still pending."""
    return 0 < conn.execute("UPDATE runs SET not_before = ? WHERE id = ? AND status = 'pending'",
                            (not_before, run_id)).rowcount


def skip_run(conn, run_id: str, now_text: str, why: str) -> bool:
    """Skip a pending run; whether it was still pending."""
    return 0 < conn.execute("UPDATE runs SET status = 'skipped', finished_at = ?, error = ? "
                            "WHERE id = ? AND status = 'pending'", (now_text, why, run_id)).rowcount
