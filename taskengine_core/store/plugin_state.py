"""The statements behind :class:`~taskengine_core.plugin_state.PluginState`: one JSON value per
(scope, key)."""

from __future__ import annotations

import sqlite3


def get(conn: sqlite3.Connection, scope: str, key: str) -> str | None:
    row = conn.execute("SELECT value FROM plugin_state WHERE scope = ? AND key = ?",
                       (scope, key)).fetchone()
    return row[0] if row else None


def items(conn: sqlite3.Connection, scope: str, prefix: str = "") -> list[tuple[str, str]]:
    if not prefix:
        return conn.execute("SELECT key, value FROM plugin_state WHERE scope = ? ORDER BY key",
                            (scope,)).fetchall()
    # a range on the primary key rather than LIKE, which would read '%' and '_' in the prefix
    return conn.execute("SELECT key, value FROM plugin_state WHERE scope = ? AND key >= ? AND key < ? "
                        "ORDER BY key", (scope, prefix, prefix + "\U0010ffff")).fetchall()


def put(conn: sqlite3.Connection, scope: str, values: dict[str, str], now: str) -> None:
    conn.executemany(
        "INSERT INTO plugin_state (scope, key, value, updated_at) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (scope, key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
        [(scope, key, value, now) for key, value in values.items()])


def delete(conn: sqlite3.Connection, scope: str, keys: list[str]) -> None:
    conn.executemany("DELETE FROM plugin_state WHERE scope = ? AND key = ?", [(scope, k) for k in keys])
