"""The statements behind :class:`~taskengine_core.plugin_state.PluginState`: one JSON value per
(scope, key)."""

from __future__ import annotations

from taskengine_core.store.sql import is_postgres


def get(conn, scope: str, key: str) -> str | None:
    row = conn.execute("SELECT value FROM plugin_state WHERE scope = ? AND key = ?",
                       (scope, key)).fetchone()
    return row[0] if row else None


def items(conn, scope: str, prefix: str = "") -> list[tuple[str, str]]:
    """``(key, value)`` of ``scope`` whose key starts with ``prefix``, in the keys' code point
    order on both databases (PostgreSQL's default collation would order them otherwise)."""
    order = ' ORDER BY key COLLATE "C"' if is_postgres(conn) else " ORDER BY key"
    if not prefix:
        return [tuple(r) for r in conn.execute(
            f"SELECT key, value FROM plugin_state WHERE scope = ?{order}", (scope,))]
    if is_postgres(conn):  # a range needs code point order, which the index there does not have
        return [tuple(r) for r in conn.execute(
            f"SELECT key, value FROM plugin_state WHERE scope = ? AND starts_with(key, ?){order}",
            (scope, prefix))]
    # a range on the primary key rather than LIKE, which would read '%' and '_' in the prefix
    return [tuple(r) for r in conn.execute(
        f"SELECT key, value FROM plugin_state WHERE scope = ? AND key >= ? AND key < ?{order}",
        (scope, prefix, prefix + "\U0010ffff"))]


def put(conn, scope: str, values: dict[str, str], now: str) -> None:
    conn.executemany(
        "INSERT INTO plugin_state (scope, key, value, updated_at) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (scope, key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
        [(scope, key, value, now) for key, value in values.items()])


def delete(conn, scope: str, keys: list[str]) -> None:
    conn.executemany("DELETE FROM plugin_state WHERE scope = ? AND key = ?", [(scope, k) for k in keys])
