"""The webhook plugin's view of its delivery queue: messages, decisions and destinations on top
of the core's :mod:`taskengine_core.store.deliveries`, which holds every statement (so the queue
works the same on SQLite and on a PostgreSQL database shared by several engines).

Delivery states: ``pending`` (waiting for its first attempt or a retry at ``next_attempt_at``),
``sending`` (claimed by a dispatcher, under a lease), ``delivered`` (a 2xx answer),
``failed`` (retrying cannot help: 410 Gone, egress refused, a malformed signing secret, the
destination deleted) and ``exhausted`` (every attempt failed). Functions taking ``conn`` run
inside the caller's transaction (``deliveries.write()`` / ``deliveries.read()``).
"""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta
from typing import Callable, Iterable

from taskengine_core.clock import to_iso
from taskengine_core.store import config
from taskengine_core.store import deliveries as queue
from taskengine_core.store.deliveries import (  # noqa: F401 - the CLI and the dashboard read these
    FINAL, PRUNE_BATCH, STATUSES, get_delivery, list_deliveries, pending_webhooks)

from .config import Destination, WebhookSettings
from .delivery import Attempt, Decision, Message, decide

LEASE_MARGIN = 60.0  # a lease outlives the request's timeout by this much
ORPHANED = "the webhook no longer exists (removed from the rule files)"
_ids = random.Random()  # seeded from os.urandom once; ids must be unique, not secret


def new_message_id() -> str:
    return f"msg_{_ids.getrandbits(96):024x}"


def enqueue(conn, rows: list[dict], now: datetime) -> None:
    """Insert deliveries, due now (see :func:`taskengine_core.store.deliveries.enqueue`)."""
    queue.enqueue(conn, rows, to_iso(now))


def destinations(conn, names: Iterable[str] | None = None) -> dict[str, Destination]:
    return {name: Destination.from_row(name, spec, enabled)
            for name, spec, enabled in queue.destinations(conn, names)}


def _setting(conn, name: str):
    text = config.setting(conn, name)
    return json.loads(text) if text else None


def settings(conn) -> WebhookSettings:
    return WebhookSettings.from_spec(_setting(conn, "webhook"))


generation = config.generation


def due_webhooks(conn, now: datetime, names: Iterable[str]) -> set[str]:
    return queue.due_webhooks(conn, to_iso(now), names)


def next_due(conn, now: datetime) -> str | None:
    return queue.next_due(conn, to_iso(now))


def _message(row: dict) -> Message:
    return Message(**row)  # the row's columns are the message's fields (MESSAGE_COLUMNS)


def _lease(now: datetime, seconds: float) -> str:
    return to_iso(now + timedelta(seconds=seconds + LEASE_MARGIN))


def claim(conn, webhook: str, limit: int, now: datetime, owner: str, lease: float) -> list[Message]:
    """Claim up to ``limit`` due deliveries of one destination, oldest due first, leased for
    ``lease`` seconds (as long as their requests may take, queued ones included) and a margin."""
    return [_message(r) for r in queue.claim_due(conn, webhook, limit, to_iso(now), owner, _lease(now, lease))]


def claim_one(conn, delivery_id: str, now: datetime, owner: str, lease: float) -> Message | None:
    row = queue.claim(conn, delivery_id, owner, _lease(now, lease))
    return _message(row) if row else None


def stale_owners(conn, now: datetime, is_dead: Callable[[str | None], bool]) -> tuple[bool, list[str]]:
    """Whether some ``sending`` delivery's lease expired, and the lease owners known dead (a
    process of this host that is gone) whose deliveries can be taken back before that."""
    now_text, expired, dead = to_iso(now), False, []
    for owner, expires in queue.lease_holders(conn):
        expired = expired or (expires or "") < now_text
        if is_dead(owner):
            dead.append(owner)
    return expired, dead


def recover(conn, now: datetime, is_dead: Callable[[str | None], bool]) -> int:
    """Deliveries left ``sending`` by an engine that is gone go back to ``pending``, due now."""
    expired, dead = stale_owners(conn, now, is_dead)
    if not expired and not dead:
        return 0
    return len(queue.recover(conn, to_iso(now), dead))


def release(conn, ids: list[str], owner: str) -> None:
    """Give back claimed deliveries whose attempt never finished (the engine is stopping)."""
    if ids:
        queue.release(conn, ids, owner)


def record(conn, results: list[Attempt], dests: dict[str, Destination], conf: WebhookSettings,
           now: datetime, owner: str, rng: random.Random | None = None) -> list[tuple[Attempt, Decision]]:
    """Store attempts and move their deliveries on; disables destinations that answered 410.
    Returns each attempt recorded with its decision (the caller emits events after the commit);
    an attempt whose delivery is no longer ``owner``'s (its lease expired and another engine
    took it over) is left out."""
    decided, outcomes, now_text = [], [], to_iso(now)
    for a in results:
        dest = dests.get(a.message.webhook)
        d = decide(a, conf, dest.retries if dest else 0, now, rng)
        decided.append((a, d))
        nxt = to_iso(d.next_attempt_at) if d.next_attempt_at else None
        outcomes.append({
            "id": a.message.id, "status": d.status, "attempts": a.number,
            "next_attempt_at": nxt or now_text,
            "finished_at": None if d.status == "pending" else now_text,
            "attempt": {"number": a.number, "request_id": a.request_id,
                        "started_at": to_iso(a.started_at), "duration": a.duration,
                        "address": a.address, "status_code": a.status_code,
                        "outcome": "succeeded" if a.ok else "failed", "error": a.error,
                        "response_excerpt": a.excerpt, "request_headers": a.request_headers,
                        "next_attempt_at": nxt}})
    kept = queue.record(conn, outcomes, owner)
    decided = [(a, d) for a, d in decided if a.message.id in kept]
    for name, why in {a.message.webhook: a.error for a, _ in decided if a.gone}.items():
        disable(conn, name, f"answered 410 Gone: {why}", now)
    return decided


def disable(conn, name: str, reason: str, now: datetime) -> bool:
    """Turn a destination off, audited as the webhook plugin's doing."""
    from taskengine_core.apply import current_actor
    from taskengine_core.store import audit

    if not config.set_enabled(conn, "webhook", name, False, to_iso(now)):
        return False
    audit.record(conn, [("disabled", "webhook", name,
                         {"enabled": {"from": True, "to": False}, "reason": reason})],
                 to_iso(now), actor=current_actor(), source="webhook")
    config.bump_generation(conn)
    return True


def fail_orphans(conn, now: datetime, names: Iterable[str] | None = None) -> list[dict]:
    """Pending deliveries whose destination was deleted fail; returns them (for events).
    ``names``: the deleted destinations (default: found from the tables)."""
    if names is None:
        known = set(destinations(conn))
        names = {n for n in queue.pending_webhooks(conn) if n not in known}
    return [{"delivery_id": r["id"], "webhook": r["webhook"], "task": r["task"], "run_id": r["run_id"],
             "attempts": r["attempts"], "error": ORPHANED}
            for r in queue.fail_orphans(conn, to_iso(now), names, ORPHANED)]


def redeliver(conn, delivery_id: str, retries: int, now: datetime) -> dict | None:
    """Queue a delivery again, due now, with a fresh retry budget; the id (``webhook-id``) stays."""
    return queue.redeliver(conn, delivery_id, retries, to_iso(now))


def prune(conn, now: datetime, limit: int = PRUNE_BATCH) -> int:
    """Delete up to ``limit`` finished deliveries older than ``settings.retention`` (default 90
    days); the caller repeats while it returns ``limit``, a transaction per batch."""
    from taskengine_core.durations import parse_duration

    keep = parse_duration(_setting(conn, "retention") or "90d", clamp=True)
    return queue.prune(conn, to_iso(now - timedelta(seconds=keep)), limit)
