"""Throttle windows of event rules: until when a rule does not fire again for a key."""

from __future__ import annotations

import json

from taskengine_core.store.sql import is_postgres


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


def lock_and_read(conn, windows: list[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """``{(rule, key): until}`` of these windows (those that exist), in one query. On PostgreSQL
    each (rule, key) is first locked until the transaction ends, in one order for every engine
    (no deadlock): an engine evaluating the same rule and key waits, then sees this one's
    window, so a throttled rule fires once across all engines."""
    if not windows:
        return {}
    if is_postgres(conn):
        conn.execute("SELECT count(pg_advisory_xact_lock(hashtext(k))) FROM "
                     "(SELECT k FROM unnest(?::text[]) AS k ORDER BY k) AS keys",
                     ([json.dumps(["throttle", rule, key]) for rule, key in windows],))
        rules = [rule for rule, _ in windows]
        keys = [key for _, key in windows]
        rows = conn.execute("SELECT t.rule, t.key, t.until FROM throttles t JOIN unnest(?::text[], ?::text[]) "
                            "AS w(rule, key) ON t.rule = w.rule AND t.key = w.key", (rules, keys)).fetchall()
    else:
        rows = conn.execute(
            "SELECT t.rule, t.key, t.until FROM json_each(?) j JOIN throttles t ON "
            "t.rule = json_extract(j.value, '$[0]') AND t.key = json_extract(j.value, '$[1]')",
            (json.dumps(windows),)).fetchall()
    return {(rule, key): until for rule, key, until in rows}
