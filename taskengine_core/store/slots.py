"""Schedules' slots and state: each slot (schedule, due time) claimed once through its unique key,
and each schedule's persisted next fire time.

Several engines may claim the same slots at the same moment (PostgreSQL): only the one whose
insert of the slot's row succeeds fires it. :func:`claim` returns exactly the slots this
transaction won, so the caller inserts runs for those and no others.
"""

from __future__ import annotations

import json
from typing import Sequence

from taskengine_core.store.sql import in_values, is_postgres


def schedules_with_state(conn, names: Sequence[str] | None = None) -> list[tuple]:
    """``(name, spec text, enabled, stored spec hash, stored next fire)`` of every schedule (or
    of those named that exist)."""
    sql, params = ("SELECT s.name, s.spec, s.enabled, st.spec_hash, st.next_fire FROM schedules s "
                   "LEFT JOIN schedule_state st ON st.schedule = s.name"), []
    if names is not None:
        clause, params = in_values(conn, "s.name", names)
        sql += f" WHERE {clause}"
    return conn.execute(sql, params).fetchall()


def save_states(conn, rows: list[tuple[str, str, str | None, str]]) -> None:
    """Set each schedule's definition hash and next fire: ``(schedule, spec hash, next fire, now)``."""
    if rows:
        conn.executemany(
            "INSERT INTO schedule_state (schedule, spec_hash, next_fire, updated_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(schedule) DO UPDATE SET spec_hash = excluded.spec_hash, "
            "next_fire = excluded.next_fire, updated_at = excluded.updated_at", rows)


def advance(conn, rows: list[tuple[str | None, str, str, str]]) -> None:
    """After firing: ``(next fire, last slot, now, schedule)`` each."""
    if rows:
        conn.executemany("UPDATE schedule_state SET next_fire = ?, last_slot = ?, updated_at = ? "
                         "WHERE schedule = ?", rows)


def claim(conn, claims: list[tuple[str, str, str, str, str]]) -> set[tuple[str, str]]:
    """Claim slots: ``(schedule, due, status, claimed_at, reason)`` each. Returns the
    ``(schedule, due)`` keys this transaction inserted; a slot already claimed (by this engine
    earlier, or by another) is left as it is and not returned."""
    if not claims:
        return set()
    if is_postgres(conn):
        columns = [list(column) for column in zip(*claims)]
        return {(schedule, due) for schedule, due in conn.execute(
            "INSERT INTO schedule_slots (schedule, due, status, claimed_at, reason) "
            "SELECT * FROM unnest(?::text[], ?::text[], ?::text[], ?::text[], ?::text[]) AS c "
            "ORDER BY 1, 2 "  # one order on every engine: two claiming the same slots cannot deadlock
            "ON CONFLICT (schedule, due) DO NOTHING RETURNING schedule, due", columns).fetchall()}
    # SQLite has one writer: under its write lock, a slot not in the table yet is this transaction's.
    # The usual pass claims only new slots: insert them all, and when SQLite counts one change a
    # slot, every slot was won. Otherwise undo the inserts and find out which were taken first.
    before = getattr(conn, "total_changes", None)
    if before is not None:
        conn.execute("SAVEPOINT claim_slots")
        conn.executemany("INSERT INTO schedule_slots (schedule, due, status, claimed_at, reason) "
                         "VALUES (?, ?, ?, ?, ?) ON CONFLICT (schedule, due) DO NOTHING", claims)
        if conn.total_changes - before == len(claims):
            conn.execute("RELEASE claim_slots")
            return {(c[0], c[1]) for c in claims}
        conn.execute("ROLLBACK TO claim_slots")
        conn.execute("RELEASE claim_slots")
    keys = [(c[0], c[1]) for c in claims]
    taken = set(conn.execute(
        "SELECT s.schedule, s.due FROM json_each(?) j JOIN schedule_slots s ON "
        "s.schedule = json_extract(j.value, '$[0]') AND s.due = json_extract(j.value, '$[1]')",
        (json.dumps(keys),)))
    won = [c for c in claims if (c[0], c[1]) not in taken]
    conn.executemany("INSERT INTO schedule_slots (schedule, due, status, claimed_at, reason) "
                     "VALUES (?, ?, ?, ?, ?) ON CONFLICT (schedule, due) DO NOTHING", won)
    return {(c[0], c[1]) for c in won}
