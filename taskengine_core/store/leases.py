"""Leases and nodes: what lets several engines share one database without a coordinator.

A lease is a named piece of work (an event source that must run once in the cluster) that one
engine holds until ``expires``; it renews it while it works, and any engine takes it over once it
has expired. A node row is an engine's heartbeat. Times are the engines' own clocks (ISO text):
keep them synchronised (NTP), well within a lease period."""

from __future__ import annotations


def acquire(conn, name: str, owner: str, now: str, expires: str) -> bool:
    """Take or renew ``name`` for ``owner`` until ``expires``: True when ``owner`` holds it now
    (it was free, expired, or already ours)."""
    row = conn.execute(
        "INSERT INTO leases (name, owner, expires, acquired_at) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, expires = excluded.expires, "
        "acquired_at = CASE WHEN leases.owner = excluded.owner THEN leases.acquired_at ELSE excluded.acquired_at END "
        "WHERE leases.owner = excluded.owner OR leases.expires < ? RETURNING owner",
        (name, owner, expires, now, now)).fetchone()
    return row is not None


def release(conn, name: str, owner: str) -> None:
    conn.execute("DELETE FROM leases WHERE name = ? AND owner = ?", (name, owner))


def holders(conn) -> list[tuple[str, str, str, str]]:
    """``(name, owner, expires, acquired_at)`` of every lease, by name."""
    return conn.execute("SELECT name, owner, expires, acquired_at FROM leases ORDER BY name").fetchall()


def heartbeat(conn, node: str, host: str, pid: int, now: str) -> None:
    conn.execute(
        "INSERT INTO nodes (id, host, pid, started_at, seen_at) VALUES (?, ?, ?, ?, ?) "
        "ON CONFLICT (id) DO UPDATE SET seen_at = excluded.seen_at", (node, host, pid, now, now))


def forget_node(conn, node: str) -> None:
    conn.execute("DELETE FROM nodes WHERE id = ?", (node,))


def nodes(conn) -> list[dict]:
    cursor = conn.execute("SELECT id, host, pid, started_at, seen_at FROM nodes ORDER BY started_at, id")
    return [dict(zip(("id", "host", "pid", "started_at", "seen_at"), row)) for row in cursor]
