"""The events inbox: events stored, read for evaluation, claimed and marked processed.

Evaluation claims the events it evaluates by their sequence numbers and marks exactly those
processed. A watermark (``seq <= the last seq read``) would be wrong once several writers share
the database: on PostgreSQL a lower seq can commit after a higher one was evaluated, and would be
marked processed without ever being evaluated. On PostgreSQL the claim takes the rows' locks
(``FOR UPDATE SKIP LOCKED``), so two engines evaluate disjoint batches.
"""

from __future__ import annotations

import json

from taskengine_core.store.sql import in_values, is_postgres

EVENT_FIELDS = ("id", "type", "source", "source_id", "data", "time")
DUPLICATE_KEYS_PER_QUERY = 400  # (source, id) pairs bound in one query: 801 parameters, under SQLite's old 999


def waiting(conn) -> bool:
    """Whether any event waits to be evaluated."""
    return conn.execute("SELECT 1 FROM events WHERE processed_at IS NULL LIMIT 1").fetchone() is not None


def claim_waiting(conn, limit: int) -> list[list]:
    """``[seq, type, size of data]`` of up to ``limit`` unprocessed events, oldest first. Call it
    inside the write transaction that marks them processed: on PostgreSQL the rows stay locked
    until it ends, and rows another engine is evaluating are skipped.

    SQLite reads them with one statement returning one JSON value, not a row per event: SQLite
    hands the GIL back between rows, and while the ingress's event loop holds it, getting it back
    takes a while each time, with the write lock held all along."""
    if is_postgres(conn):
        rows = conn.execute(
            "SELECT seq, type, octet_length(data) FROM events WHERE processed_at IS NULL "
            "ORDER BY seq LIMIT ? FOR UPDATE SKIP LOCKED", (limit,)).fetchall()
        return [[seq, event_type, size] for seq, event_type, size in rows]
    return sorted(json.loads(conn.execute(
        "SELECT json_group_array(json_array(seq, type, length(data))) FROM (SELECT seq, type, data "
        "FROM events WHERE processed_at IS NULL ORDER BY seq LIMIT ?)", (limit,)).fetchone()[0]))


def read_events(conn, seqs: list[int]) -> list[dict]:
    """The inbox events with these sequence numbers, oldest first, their data parsed, each with
    its ``seq``. On SQLite the data column is spliced into one JSON value as the text it is
    (SQLite's json() would turn huge integers into floats), so Python parses everything in one
    call; a NULL becomes ``null``."""
    if not seqs:
        return []
    if is_postgres(conn):
        where, params = in_values(conn, "seq", seqs, cast="bigint")
        rows = conn.execute(f"SELECT seq, id, type, source, source_id, time, data FROM events WHERE {where} "
                            "ORDER BY seq", params).fetchall()
        return [{"seq": seq, "id": eid, "type": type_, "source": source, "source_id": source_id, "time": time,
                 "data": json.loads(data) if data is not None else None}
                for seq, eid, type_, source, source_id, time, data in rows]
    text = conn.execute(
        "SELECT '[' || coalesce(group_concat('{\"seq\":' || seq || ',\"id\":' || json_quote(id) || "
        "',\"type\":' || json_quote(type) || ',\"source\":' || json_quote(source) || "
        "',\"source_id\":' || json_quote(source_id) || ',\"time\":' || json_quote(time) || "
        "',\"data\":' || coalesce(data, 'null') || '}', ','), '') || ']' FROM events "
        "WHERE seq IN (SELECT value FROM json_each(?))", (json.dumps(seqs),)).fetchone()[0]
    return sorted(json.loads(text), key=lambda row: row["seq"])


def mark_processed(conn, seqs: list[int], now: str) -> int:
    """Mark exactly these events processed (those still unprocessed); how many changed."""
    if not seqs:
        return 0
    where, params = in_values(conn, "seq", seqs, cast="bigint")
    return conn.execute(f"UPDATE events SET processed_at = ? WHERE processed_at IS NULL AND {where}",
                        (now, *params)).rowcount


def originals(conn, keys: list[tuple[str, str]], window_start: str) -> dict[tuple[str, str], str]:
    """The first inbox event within the dedup window for each (source, source id), one query
    per DUPLICATE_KEYS_PER_QUERY keys. Bound as parameters: compared whole, NUL characters included.
    Call it in the transaction that stores the events."""
    found: dict[tuple[str, str], str] = {}
    if is_postgres(conn) and keys:
        # another engine's ingress may be storing the same (source, id) right now: the lock on
        # each key (held until this transaction ends, taken in one order) makes the second
        # see the first's event and store its own as the duplicate
        conn.execute("SELECT count(pg_advisory_xact_lock(hashtext(k))) FROM "
                     "(SELECT k FROM unnest(?::text[]) AS k ORDER BY k) AS keys",
                     ([json.dumps(["dedup", source, source_id]) for source, source_id in keys],))
    for i in range(0, len(keys), DUPLICATE_KEYS_PER_QUERY):
        chunk = keys[i:i + DUPLICATE_KEYS_PER_QUERY]
        values = ", ".join(["(?, ?)"] * len(chunk))
        for source, source_id, event_id in conn.execute(
                f"WITH k(source, source_id) AS (VALUES {values}) SELECT e.source, e.source_id, e.id "
                "FROM k CROSS JOIN events e WHERE e.source = k.source AND e.source_id = k.source_id "
                "AND e.received_at >= ? AND e.duplicate_of IS NULL ORDER BY e.seq",
                [*(part for key in chunk for part in key), window_start]):
            found.setdefault((source, source_id), event_id)
    return found


def insert(conn, rows: list[tuple]) -> None:
    """Store events: ``(id, type, source, source_id, data text, time, received_at, processed_at,
    duplicate_of)`` each."""
    conn.executemany(
        "INSERT INTO events (id, type, source, source_id, data, time, received_at, processed_at, duplicate_of) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)


def insert_internal(conn, rows: list[tuple]) -> None:
    """Store events the engine raises itself: ``(id, type, source, data text, time, received_at)``."""
    if rows:
        conn.executemany(
            "INSERT INTO events (id, type, source, data, time, received_at) VALUES (?, ?, ?, ?, ?, ?)", rows)


def exists(conn, event_id: str) -> bool:
    return conn.execute("SELECT 1 FROM events WHERE id = ?", (event_id,)).fetchone() is not None


def load(conn, event_id: str) -> tuple | None:
    """``(id, type, source, source_id, data, time)`` of the event with this id, None if none."""
    return conn.execute("SELECT id, type, source, source_id, data, time FROM events WHERE id = ?",
                        (event_id,)).fetchone()
