"""Webhook deliveries and their attempts (tables ``webhook_deliveries``, ``webhook_attempts``).

A delivery is ``pending`` (due at ``next_attempt_at``), ``sending`` (claimed by one dispatcher
under a lease: ``lease_owner`` until ``lease_expires``), ``delivered``, ``failed`` (retrying
cannot help) or ``exhausted`` (every attempt failed). Several engines may share one database:
a claim is one ``UPDATE ... WHERE status = 'pending'`` whose ``RETURNING`` says which rows this
caller got (on PostgreSQL its candidates are locked ``FOR UPDATE SKIP LOCKED``, so two nodes
take different rows instead of waiting on each other); a result is recorded only while its
delivery is still ``sending`` under the caller's lease; and a lease that expired (its node
died) is put back to ``pending`` by whichever node looks first.

Times are ISO-8601 text (:func:`taskengine_core.clock.to_iso`). Functions taking ``conn`` run in
the caller's transaction.
"""

from __future__ import annotations

import json
from json.encoder import encode_basestring_ascii as _quoted  # what json.dumps quotes text with
from typing import Any, Iterable

from taskengine_core.store.sql import in_values, indexed_by, is_postgres, rows_as_dicts
from taskengine_core.store.sql import savepoint as sql_savepoint

STATUSES = ("pending", "sending", "delivered", "failed", "exhausted")
FINAL = ("delivered", "failed", "exhausted")
_FINAL_TERM = "status IN ('delivered', 'failed', 'exhausted')"  # as in webhook_deliveries_by_status
PRUNE_BATCH = 2000  # finished deliveries deleted per transaction
MESSAGE_COLUMNS = ("id, webhook, type, body, content_type, headers, attempts, max_attempts, "
                   "task, run_id, event_id")
_ATTEMPT_COLUMNS = ("number, request_id, started_at, duration, address, status_code, outcome, "
                    "error, response_excerpt, request_headers, next_attempt_at")


# -- queueing --------------------------------------------------------------------------------


def enqueue(conn, rows: list[dict], now: str) -> None:
    """Insert deliveries, due at ``now``. Each row: ``id``, ``webhook``, ``type``, ``body``,
    ``content_type``, ``max_attempts``, and optionally ``headers`` (a dict), ``task``,
    ``run_id``, ``event_id``. An id already queued is left as it is (a re-run queues nothing)."""
    conn.executemany(
        "INSERT INTO webhook_deliveries (id, webhook, status, type, body, content_type, headers, "
        "task, run_id, event_id, created_at, next_attempt_at, max_attempts) "
        "VALUES (?, ?, 'pending', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
        [(r["id"], r["webhook"], r["type"], r["body"], r["content_type"],
          headers_json(r.get("headers")), r.get("task"), r.get("run_id"), r.get("event_id"),
          now, now, r["max_attempts"]) for r in rows])


def headers_json(headers: dict | None) -> str:
    """``json.dumps(headers or {})``, the same text; for the usual headers (text names and
    values) without the encoder's set-up per call (a delivery's and each attempt's headers)."""
    if not headers:
        return "{}"
    try:
        return "{" + ", ".join([_quoted(k) + ": " + _quoted(v) for k, v in headers.items()]) + "}"
    except (TypeError, AttributeError):  # a value (or name) not text, or not a mapping: the encoder's rules
        return json.dumps(headers)


def savepoint(conn, name: str = "webhook_deliveries"):
    """:func:`taskengine_core.store.sql.savepoint` (kept here for the plugins that call it)."""
    return sql_savepoint(conn, name)


# -- the destinations a dispatcher sends to (the configuration's ``webhooks``) ----------------


def destinations(conn, names: Iterable[str] | None = None) -> list[tuple[str, str, int]]:
    """``(name, spec as JSON text, enabled)`` of every webhook destination, or of ``names``."""
    if names is None:
        return [tuple(r) for r in conn.execute("SELECT name, spec, enabled FROM webhooks")]
    term, params = in_values(conn, "name", sorted(set(names)))
    return [tuple(r) for r in conn.execute(f"SELECT name, spec, enabled FROM webhooks WHERE {term}", params)]


# -- finding due work ------------------------------------------------------------------------


def due_webhooks(conn, now: str, names: Iterable[str]) -> set[str]:
    """Which of ``names`` have a delivery due now: one indexed lookup each (the ``pending``
    part of ``webhook_deliveries_due``), however many deliveries wait for later, all in one
    statement (one round trip to a PostgreSQL server, however many names)."""
    names = list(names)
    if not names:
        return set()
    if is_postgres(conn):
        given, param = "unnest(?::text[]) AS given(value)", names
    else:
        given, param = "json_each(?) AS given", json.dumps(names)
    return {r[0] for r in conn.execute(
        f"SELECT given.value FROM {given} WHERE EXISTS (SELECT 1 FROM webhook_deliveries "
        "WHERE status = 'pending' AND webhook = given.value AND next_attempt_at <= ?)", (param, now))}


def pending_webhooks(conn) -> set[str]:
    """The destinations that have pending deliveries, found by skipping through the index
    from one name to the next (one lookup per destination, not a row per delivery), in one
    statement."""
    return {r[0] for r in conn.execute(
        "WITH RECURSIVE names(webhook) AS ("
        "SELECT (SELECT min(webhook) FROM webhook_deliveries WHERE status = 'pending') "
        "UNION ALL SELECT (SELECT min(d.webhook) FROM webhook_deliveries d "
        "WHERE d.status = 'pending' AND d.webhook > names.webhook) FROM names "
        "WHERE names.webhook IS NOT NULL) "
        "SELECT webhook FROM names WHERE webhook IS NOT NULL")}


def next_due(conn, now: str) -> str | None:
    """When the next pending delivery falls due after ``now`` (``None``: none waits)."""
    row = conn.execute("SELECT min(next_attempt_at) FROM webhook_deliveries "
                       "WHERE status = 'pending' AND next_attempt_at > ?", (now,)).fetchone()
    return row[0] if row else None


# -- claims and leases -----------------------------------------------------------------------


def claim_due(conn, webhook: str, limit: int, now: str, owner: str, lease_expires: str) -> list[dict]:
    """Claim up to ``limit`` due deliveries of ``webhook`` for ``owner`` until ``lease_expires``,
    oldest due first; returns the claimed rows (``headers`` decoded). Only rows this very
    statement moved from ``pending`` are returned, so two engines never get the same one."""
    if is_postgres(conn):
        # The candidates are picked once (MATERIALIZED: an IN (subquery LIMIT n) may be run
        # again per row and claim more than n) and locked, skipping rows another engine holds.
        returning = ", ".join(f"d.{c.strip()}" for c in MESSAGE_COLUMNS.split(","))
        cur = conn.execute(
            "WITH picked AS MATERIALIZED (SELECT id FROM webhook_deliveries WHERE status = 'pending' "
            "AND webhook = ? AND next_attempt_at <= ? ORDER BY next_attempt_at LIMIT ? "
            "FOR UPDATE SKIP LOCKED) "
            "UPDATE webhook_deliveries d SET status = 'sending', lease_owner = ?, lease_expires = ? "
            f"FROM picked WHERE d.id = picked.id AND d.status = 'pending' RETURNING {returning}",
            (webhook, now, limit, owner, lease_expires))
        return _messages(cur)
    cur = conn.execute(
        "UPDATE webhook_deliveries SET status = 'sending', lease_owner = ?, lease_expires = ? "
        "WHERE id IN (SELECT id FROM webhook_deliveries WHERE status = 'pending' AND webhook = ? "
        "AND next_attempt_at <= ? ORDER BY next_attempt_at LIMIT ?) AND status = 'pending' "
        f"RETURNING {MESSAGE_COLUMNS}", (owner, lease_expires, webhook, now, limit))
    return _messages(cur)


def claim(conn, delivery_id: str, owner: str, lease_expires: str) -> dict | None:
    """Claim one pending delivery (``taskengine webhooks test``/``redeliver`` sending it in the
    CLI's process); ``None`` when it is not pending (a dispatcher has it, or it is finished)."""
    cur = conn.execute(
        "UPDATE webhook_deliveries SET status = 'sending', lease_owner = ?, lease_expires = ? "
        f"WHERE id = ? AND status = 'pending' RETURNING {MESSAGE_COLUMNS}",
        (owner, lease_expires, delivery_id))
    found = _messages(cur)
    return found[0] if found else None


def _messages(cur) -> list[dict]:
    rows = rows_as_dicts(cur)
    for row in rows:
        text = row["headers"]
        row["headers"] = json.loads(text) if text and text != "{}" else {}
    return rows


def lease_holders(conn) -> list[tuple[str | None, str | None]]:
    """``(lease_owner, earliest lease_expires)`` of every owner holding ``sending`` deliveries
    (through the ``webhook_deliveries_sending`` index: as many rows as owners)."""
    return [tuple(r) for r in conn.execute(
        "SELECT lease_owner, min(lease_expires) FROM webhook_deliveries WHERE status = 'sending' "
        "GROUP BY lease_owner")]


def recover(conn, now: str, dead_owners: Iterable[str] = ()) -> list[str]:
    """Put back to ``pending`` (due now) the deliveries whose lease expired before ``now`` or
    whose owner is known to be dead; returns their ids. Safe from any node at any time: the
    statement itself checks each row is still ``sending`` under such a lease. The receiver may
    have got a message whose sender died: it de-duplicates by ``webhook-id``."""
    owners = [o for o in dead_owners if o]
    term, params = ("", [])
    if owners:
        term, params = in_values(conn, "lease_owner", owners)
        term = f" OR {term}"
    cur = conn.execute(
        "UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = ?, lease_owner = NULL, "
        f"lease_expires = NULL WHERE status = 'sending' AND (lease_expires < ? OR lease_expires IS NULL{term}) "
        "RETURNING id", (now, now, *params))
    return [r[0] for r in cur.fetchall()]


def release(conn, ids: list[str], owner: str) -> int:
    """Give back deliveries ``owner`` claimed but never attempted (the engine is stopping):
    ``pending`` again, the attempt not counted. Returns how many were still ``owner``'s."""
    released = 0
    for delivery_id in ids:
        released += conn.execute(
            "UPDATE webhook_deliveries SET status = 'pending', lease_owner = NULL, lease_expires = NULL "
            "WHERE id = ? AND status = 'sending' AND lease_owner = ?", (delivery_id, owner)).rowcount
    return released


def record(conn, outcomes: list[dict], owner: str) -> set[str]:
    """Store finished attempts and move their deliveries on. Each outcome: ``id``, ``status``
    (the delivery's new one), ``attempts``, ``next_attempt_at``, ``finished_at`` and
    ``attempt`` (the attempt's row: ``number``, ``request_id``, ``started_at``, ``duration``,
    ``address``, ``status_code``, ``outcome``, ``error``, ``response_excerpt``,
    ``request_headers`` (a dict), ``next_attempt_at``). Only deliveries still ``sending`` under
    ``owner``'s lease are changed (one whose lease expired may have been claimed again by
    another engine, whose attempt counts instead); returns the ids that were."""
    kept: set[str] = set()
    for o in outcomes:
        a = o["attempt"]
        if conn.execute(
                "UPDATE webhook_deliveries SET status = ?, attempts = ?, next_attempt_at = ?, "
                "last_status_code = ?, last_error = ?, finished_at = ?, lease_owner = NULL, "
                "lease_expires = NULL WHERE id = ? AND status = 'sending' AND lease_owner = ?",
                (o["status"], o["attempts"], o["next_attempt_at"], a["status_code"], a["error"],
                 o["finished_at"], o["id"], owner)).rowcount:
            kept.add(o["id"])
    conn.executemany(
        "INSERT INTO webhook_attempts (delivery_id, " + _ATTEMPT_COLUMNS + ") "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (delivery_id, number) DO NOTHING",
        [(o["id"], o["attempt"]["number"], o["attempt"]["request_id"], o["attempt"]["started_at"],
          o["attempt"]["duration"], o["attempt"]["address"], o["attempt"]["status_code"],
          o["attempt"]["outcome"], o["attempt"]["error"], o["attempt"]["response_excerpt"],
          headers_json(o["attempt"]["request_headers"]), o["attempt"]["next_attempt_at"])
         for o in outcomes if o["id"] in kept])
    return kept


def fail_orphans(conn, now: str, names: Iterable[str], why: str) -> list[dict]:
    """Pending deliveries to the destinations ``names`` that no longer exist become ``failed``
    (``last_error`` = ``why``); returns them (``id``, ``webhook``, ``task``, ``run_id``,
    ``attempts``) for the caller's events."""
    failed: list[dict] = []
    for name in sorted(names):
        failed += rows_as_dicts(conn.execute(
            "UPDATE webhook_deliveries SET status = 'failed', last_error = ?, finished_at = ?, "
            "lease_owner = NULL, lease_expires = NULL WHERE id IN (SELECT id FROM webhook_deliveries"
            f"{indexed_by(conn, 'webhook_deliveries_due')} WHERE status = 'pending' AND webhook = ?) "
            "AND status = 'pending' AND webhook NOT IN (SELECT name FROM webhooks) "
            "RETURNING id, webhook, task, run_id, attempts", (why, now, name)))
    return failed


# -- the operator's view: list, show, redeliver, prune ---------------------------------------


def status_of(conn, delivery_id: str) -> tuple[str, str] | None:
    """``(webhook, status)`` of a delivery, ``None`` when there is no such delivery."""
    row = conn.execute("SELECT webhook, status FROM webhook_deliveries WHERE id = ?",
                       (delivery_id,)).fetchone()
    return (row[0], row[1]) if row else None


def redeliver(conn, delivery_id: str, retries: int, now: str) -> dict | None:
    """Queue a delivery again, due now, with ``retries`` more attempts; its id (``webhook-id``)
    stays. ``None`` when there is no such delivery; ``{"status": "sending", ...}`` (unchanged)
    while one is being sent."""
    row = conn.execute("SELECT status, attempts, webhook FROM webhook_deliveries WHERE id = ?",
                       (delivery_id,)).fetchone()
    if row is None:
        return None
    status, attempts, webhook = row
    if status == "sending" or not conn.execute(
            "UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = ?, max_attempts = ?, "
            "finished_at = NULL WHERE id = ? AND status = ?",
            (now, attempts + retries + 1, delivery_id, status)).rowcount:
        return {"status": "sending", "webhook": webhook}
    return {"status": "pending", "webhook": webhook, "previous": status}


def list_deliveries(conn, webhook: str | None = None, status: str | None = None,
                    limit: int = 50) -> list[dict[str, Any]]:
    """Deliveries, newest first, of one destination and/or in one state."""
    terms, params = [], []
    for column, value in (("webhook", webhook), ("status", status)):
        if value:
            terms.append(f"{column} = ?")
            params.append(value)
    if status in FINAL:  # the very term of the partial index webhook_deliveries_by_status
        terms.append(_FINAL_TERM)
    clause = f" WHERE {' AND '.join(terms)}" if terms else ""
    rows = rows_as_dicts(conn.execute(
        "SELECT id, webhook, status, type, task, run_id, event_id, created_at, attempts, "
        "max_attempts, next_attempt_at, last_status_code, last_error, finished_at "
        f"FROM webhook_deliveries{clause} ORDER BY created_at DESC, rowid DESC LIMIT ?", (*params, limit)))
    for row in rows:
        if row["status"] != "pending":
            row["next_attempt_at"] = None
    return rows


def get_delivery(conn, delivery_id: str) -> dict | None:
    """One delivery with ``headers`` decoded and ``attempt_log``: every attempt, in order."""
    found = rows_as_dicts(conn.execute(
        "SELECT id, webhook, status, type, body, content_type, headers, task, run_id, event_id, "
        "created_at, next_attempt_at, attempts, max_attempts, last_status_code, last_error, "
        "finished_at FROM webhook_deliveries WHERE id = ?", (delivery_id,)))
    if not found:
        return None
    out = found[0]
    out["headers"] = json.loads(out["headers"] or "{}")
    out["attempt_log"] = rows_as_dicts(conn.execute(
        f"SELECT {_ATTEMPT_COLUMNS} FROM webhook_attempts WHERE delivery_id = ? ORDER BY number",
        (delivery_id,)))
    for a in out["attempt_log"]:
        a["request_headers"] = json.loads(a["request_headers"] or "{}")
    return out


def prune(conn, before: str, limit: int = PRUNE_BATCH) -> int:
    """Delete up to ``limit`` finished deliveries (and their attempts) that finished before
    ``before``, through the ``webhook_deliveries_expiry`` index; the caller repeats while it
    returns ``limit``, a transaction per batch."""
    batch = (f"SELECT rowid FROM webhook_deliveries{indexed_by(conn, 'webhook_deliveries_expiry')} "
             f"WHERE coalesce(finished_at, created_at) < ? AND {_FINAL_TERM} LIMIT ?")
    if is_postgres(conn):  # picked once, so a batch is never more than ``limit``
        return conn.execute(f"WITH batch AS MATERIALIZED ({batch}) DELETE FROM webhook_deliveries "
                            "WHERE rowid IN (SELECT rowid FROM batch)", (before, limit)).rowcount
    return conn.execute(f"DELETE FROM webhook_deliveries WHERE rowid IN ({batch})", (before, limit)).rowcount
