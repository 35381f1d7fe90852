"""Throttle windows of event rules: until when a rule does not fire again for a key."""

from __future__ import annotations


def until(conn, rule: str, key: str) -> str | None:
    """When the rule's window for ``key`` ends (ISO 8601), None when it has none."""
    row = conn.execute("SELECT until FROM throttles WHERE rule = ? AND key = ?", (rule, key)).fetchone()
    return row[0] if row else None


def save(conn, windows: list[tuple[str, str, str]]) -> None:
    """Start or move windows: ``(rule, key, until)`` each."""
    if windows:
        conn.executemany(
            "INSERT INTO throttles (rule, key, until) VALUES (?, ?, ?) "
            "ON CONFLICT(rule, key) DO UPDATE SET until = excluded.until", windows)
