"""The ``webhook_deliveries`` and ``webhook_attempts`` tables (migration ``m003`` in the core).

Delivery states: ``pending`` (waiting for its first attempt or a retry at ``next_attempt_at``),
``sending`` (claimed by a dispatcher, under a lease), ``delivered`` (a 2xx answer),
``failed`` (retrying cannot help: 410 Gone, egress refused, a malformed signing secret, the
destination deleted) and ``exhausted`` (every attempt failed). Functions taking ``conn`` run
inside the caller's write transaction.
"""

from __future__ import annotations

import json
import random
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any, Iterable, Iterator

from taskengine_core.clock import to_iso
from taskengine_core.store import where

from .config import Destination, WebhookSettings
from .delivery import Attempt, Decision, Message, decide

STATUSES = ("pending", "sending", "delivered", "failed", "exhausted")
LEASE_MARGIN = 60.0
FINAL = ("delivered", "failed", "exhausted")
_FINAL_TERM = "status IN ('delivered', 'failed', 'exhausted')"  # as in webhook_deliveries_by_status
PRUNE_BATCH = 2000  # finished deliveries deleted per transaction
_MESSAGE_COLUMNS = ("id, webhook, type, body, content_type, headers, attempts, max_attempts, "
                    "task, run_id, event_id")


_ids = random.Random()  # seeded from os.urandom once; ids must be unique, not secret


def new_message_id() -> str:
    return f"msg_{_ids.getrandbits(96):024x}"


def enqueue(conn, rows: list[dict], now: datetime) -> None:
    """Insert deliveries, due now. Each row: id, webhook, type, body, content_type, headers,
    max_attempts, and optionally task, run_id, event_id. A known id is left as it is."""
    now_text = to_iso(now)
    conn.executemany(
        "INSERT INTO webhook_deliveries (id, webhook, status, type, body, content_type, headers, "
        "task, run_id, event_id, created_at, next_attempt_at, max_attempts) "
        "VALUES (?, ?, 'pending', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO NOTHING",
        [(r["id"], r["webhook"], r["type"], r["body"], r["content_type"],
          json.dumps(r.get("headers") or {}), r.get("task"), r.get("run_id"), r.get("event_id"),
          now_text, now_text, r["max_attempts"]) for r in rows])


def destinations(conn) -> dict[str, Destination]:
    return {name: Destination.from_row(name, spec, enabled)
            for name, spec, enabled in conn.execute("SELECT name, spec, enabled FROM webhooks")}


def settings(conn) -> WebhookSettings:
    row = conn.execute("SELECT spec FROM settings WHERE name = 'webhook'").fetchone()
    return WebhookSettings.from_spec(json.loads(row[0]) if row else None)


def generation(conn) -> int:
    row = conn.execute("SELECT value FROM meta WHERE key = 'config_generation'").fetchone()
    return int(row[0]) if row else 0


def _messages(rows) -> list[Message]:
    return [Message(r[0], r[1], r[2], r[3], r[4], json.loads(r[5] or "{}"), r[6], r[7], r[8],
                    r[9], r[10]) for r in rows]


def claim(conn, webhook: str, limit: int, now: datetime, owner: str, lease: float) -> list[Message]:
    """Claim up to ``limit`` due deliveries of one destination, oldest due first."""
    now_text = to_iso(now)
    rows = conn.execute(
        f"UPDATE webhook_deliveries SET status = 'sending', lease_owner = ?, lease_expires = ? "
        f"WHERE id IN (SELECT id FROM webhook_deliveries WHERE status = 'pending' AND webhook = ? "
        f"AND next_attempt_at <= ? ORDER BY next_attempt_at LIMIT ?) RETURNING {_MESSAGE_COLUMNS}",
        (owner, to_iso(now + timedelta(seconds=lease + LEASE_MARGIN)), webhook, now_text, limit),
    ).fetchall()
    return _messages(rows)


def claim_one(conn, delivery_id: str, now: datetime, owner: str, lease: float) -> Message | None:
    rows = conn.execute(
        f"UPDATE webhook_deliveries SET status = 'sending', lease_owner = ?, lease_expires = ? "
        f"WHERE id = ? AND status = 'pending' RETURNING {_MESSAGE_COLUMNS}",
        (owner, to_iso(now + timedelta(seconds=lease + LEASE_MARGIN)), delivery_id)).fetchall()
    found = _messages(rows)
    return found[0] if found else None


@contextmanager
def snapshot(conn) -> Iterator:
    """A read transaction: one consistent view, and no write lock (WAL lets writers go on)."""
    conn.execute("BEGIN")
    try:
        yield conn
    finally:
        conn.execute("COMMIT")


def due_webhooks(conn, now: datetime, names: Iterable[str]) -> set[str]:
    """Which of ``names`` have a delivery due now: one indexed lookup each (the ``pending``
    part of ``webhook_deliveries_due``), however many deliveries wait for later."""
    now_text = to_iso(now)
    return {name for name in names if conn.execute(
        "SELECT 1 FROM webhook_deliveries WHERE status = 'pending' AND webhook = ? "
        "AND next_attempt_at <= ? LIMIT 1", (name, now_text)).fetchone()}


def pending_webhooks(conn) -> set[str]:
    """The destinations that have pending deliveries, found by skipping through the index
    from one name to the next (one lookup per destination, not a row per delivery)."""
    found, name = set(), ""
    while True:
        name = conn.execute("SELECT min(webhook) FROM webhook_deliveries WHERE status = 'pending' "
                            "AND webhook > ?", (name,)).fetchone()[0]
        if name is None:
            return found
        found.add(name)


def next_due(conn, now: datetime) -> str | None:
    row = conn.execute("SELECT min(next_attempt_at) FROM webhook_deliveries "
                       "WHERE status = 'pending' AND next_attempt_at > ?", (to_iso(now),)).fetchone()
    return row[0] if row else None


def stale_sending(conn, now: datetime, is_dead) -> list[str]:
    """Deliveries left ``sending`` by a process that is gone (dead pid or lease expired)."""
    now_text = to_iso(now)
    return [r[0] for r in conn.execute(
        "SELECT id, lease_owner, lease_expires FROM webhook_deliveries WHERE status = 'sending'")
        if (r[2] or "") < now_text or is_dead(r[1])]


def recover(conn, now: datetime, is_dead) -> int:
    """Deliveries left ``sending`` by a process that is gone go back to ``pending``, due now.
    The receiver may have got the message: it de-duplicates by ``webhook-id``."""
    now_text = to_iso(now)
    stale = stale_sending(conn, now, is_dead)
    conn.executemany("UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = ?, "
                     "lease_owner = NULL, lease_expires = NULL WHERE id = ? AND status = 'sending'",
                     [(now_text, i) for i in stale])
    return len(stale)


def release(conn, ids: list[str]) -> None:
    """Give back claimed deliveries whose attempt never finished (the engine is stopping)."""
    conn.executemany("UPDATE webhook_deliveries SET status = 'pending', lease_owner = NULL, "
                     "lease_expires = NULL WHERE id = ? AND status = 'sending'", [(i,) for i in ids])


def record(conn, results: list[Attempt], dests: dict[str, Destination], conf: WebhookSettings,
           now: datetime, rng: random.Random | None = None) -> list[tuple[Attempt, Decision]]:
    """Store attempts and move their deliveries on; disables destinations that answered 410.
    Returns each attempt with its decision (the caller emits events after the commit)."""
    out, attempts, updates, gone = [], [], [], {}
    for a in results:
        dest = dests.get(a.message.webhook)
        d = decide(a, conf, dest.retries if dest else 0, now, rng)
        out.append((a, d))
        nxt = to_iso(d.next_attempt_at) if d.next_attempt_at else None
        attempts.append((a.message.id, a.number, a.request_id, to_iso(a.started_at), a.duration,
                         a.address, a.status_code, "succeeded" if a.ok else "failed", a.error,
                         a.excerpt, json.dumps(a.request_headers), nxt))
        final = None if d.status == "pending" else to_iso(now)
        updates.append((d.status, a.number, nxt or to_iso(now), a.status_code, a.error, final,
                        a.message.id))
        if a.gone:
            gone[a.message.webhook] = a.error
    conn.executemany(
        "INSERT INTO webhook_attempts (delivery_id, number, request_id, started_at, duration, "
        "address, status_code, outcome, error, response_excerpt, request_headers, next_attempt_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(delivery_id, number) DO NOTHING",
        attempts)
    conn.executemany(
        "UPDATE webhook_deliveries SET status = ?, attempts = ?, next_attempt_at = ?, "
        "last_status_code = ?, last_error = ?, finished_at = ?, lease_owner = NULL, "
        "lease_expires = NULL WHERE id = ?", updates)
    for name, why in gone.items():
        disable(conn, name, f"answered 410 Gone: {why}", now)
    return out


def disable(conn, name: str, reason: str, now: datetime) -> bool:
    from taskengine_core.apply import canonical, current_actor

    changed = conn.execute("UPDATE webhooks SET enabled = 0, updated_at = ? WHERE name = ? "
                           "AND enabled = 1", (to_iso(now), name)).rowcount
    if changed:
        conn.execute("INSERT INTO audit (time, actor, action, kind, name, changes, source) "
                     "VALUES (?, ?, 'disabled', 'webhook', ?, ?, 'webhook')",
                     (to_iso(now), current_actor(), name,
                      canonical({"enabled": {"from": True, "to": False}, "reason": reason})))
        conn.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'config_generation'")
    return bool(changed)


def fail_orphans(conn, now: datetime, names: Iterable[str] | None = None) -> list[dict]:
    """Pending deliveries whose destination was deleted fail; returns them (for events).
    ``names``: the deleted destinations (default: found from the table)."""
    if names is None:
        names = pending_webhooks(conn) - {r[0] for r in conn.execute("SELECT name FROM webhooks")}
    rows = []
    for name in sorted(names):
        rows += conn.execute(
            "SELECT id, webhook, task, run_id, attempts FROM webhook_deliveries "
            "INDEXED BY webhook_deliveries_due WHERE status = 'pending'"
            " AND webhook = ? AND webhook NOT IN (SELECT name FROM webhooks)", (name,)).fetchall()
    why = "the webhook no longer exists (removed from the rule files)"
    conn.executemany("UPDATE webhook_deliveries SET status = 'failed', last_error = ?, "
                     "finished_at = ? WHERE id = ?", [(why, to_iso(now), r[0]) for r in rows])
    return [{"delivery_id": r[0], "webhook": r[1], "task": r[2], "run_id": r[3],
             "attempts": r[4], "error": why} for r in rows]


def redeliver(conn, delivery_id: str, retries: int, now: datetime) -> dict | None:
    """Queue a delivery again, due now, with a fresh retry budget; the id (``webhook-id``) stays."""
    row = conn.execute("SELECT status, attempts, webhook FROM webhook_deliveries WHERE id = ?",
                       (delivery_id,)).fetchone()
    if row is None:
        return None
    if row[0] == "sending":
        return {"status": "sending", "webhook": row[2]}
    conn.execute("UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = ?, "
                 "max_attempts = ?, finished_at = NULL WHERE id = ?",
                 (to_iso(now), row[1] + retries + 1, delivery_id))
    return {"status": "pending", "webhook": row[2], "previous": row[0]}


def list_deliveries(conn, webhook: str | None = None, status: str | None = None,
                    limit: int = 50) -> list[dict[str, Any]]:
    clause, params = where(webhook=webhook, status=status)
    if status in FINAL:  # the very term of the partial index webhook_deliveries_by_status
        clause += f" AND {_FINAL_TERM}"
    sql = ("SELECT id, webhook, status, type, task, run_id, event_id, created_at, attempts, "
           "max_attempts, next_attempt_at, last_status_code, last_error, finished_at "
           f"FROM webhook_deliveries{clause} ORDER BY created_at DESC, rowid DESC LIMIT ?")
    cur = conn.execute(sql, (*params, limit))
    names = [c[0] for c in cur.description]
    rows = [dict(zip(names, r)) for r in cur.fetchall()]
    for row in rows:
        if row["status"] != "pending":
            row["next_attempt_at"] = None
    return rows


def get_delivery(conn, delivery_id: str) -> dict | None:
    cur = conn.execute("SELECT * FROM webhook_deliveries WHERE id = ?", (delivery_id,))
    row = cur.fetchone()
    if row is None:
        return None
    out = dict(zip([c[0] for c in cur.description], row))
    out.pop("lease_owner", None)
    out.pop("lease_expires", None)
    out["headers"] = json.loads(out["headers"] or "{}")
    cur = conn.execute("SELECT number, request_id, started_at, duration, address, status_code, "
                       "outcome, error, response_excerpt, request_headers, next_attempt_at "
                       "FROM webhook_attempts WHERE delivery_id = ? ORDER BY number", (delivery_id,))
    names = [c[0] for c in cur.description]
    out["attempt_log"] = [dict(zip(names, r)) for r in cur.fetchall()]
    for a in out["attempt_log"]:
        a["request_headers"] = json.loads(a["request_headers"] or "{}")
    return out


def prune(conn, now: datetime, limit: int = PRUNE_BATCH) -> int:
    """Delete up to ``limit`` finished deliveries older than ``settings.retention`` (default 90
    days), through the ``webhook_deliveries_expiry`` index; the caller repeats while it returns
    ``limit``, a transaction per batch."""
    from taskengine_core.durations import parse_duration

    row = conn.execute("SELECT spec FROM settings WHERE name = 'retention'").fetchone()
    before = now - timedelta(seconds=parse_duration(json.loads(row[0]) if row else "90d", clamp=True))
    return conn.execute("DELETE FROM webhook_deliveries WHERE rowid IN (SELECT rowid FROM "
                        f"webhook_deliveries INDEXED BY webhook_deliveries_expiry WHERE coalesce(finished_at, created_at) < ? AND {_FINAL_TERM} "
                        "LIMIT ?)", (to_iso(before), limit)).rowcount
