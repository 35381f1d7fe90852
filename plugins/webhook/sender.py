"""What the dispatcher and the CLI share: the HTTP client, the events and log lines that follow
an attempt, and :func:`deliver_now` (one attempt, made in this process, e.g. ``webhooks test``).

The client is aiohttp rather than ``requests``: one event loop keeps hundreds of requests in
flight on one thread (a thread per request would not), it is several times faster per request,
and its pluggable resolver is what lets egress control pin the address connected to (see
:mod:`.egress`). Cookies are never kept between deliveries and proxies from the environment are
not used.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timezone

import aiohttp

from taskengine_core.context import EngineInfo
from taskengine_core.deliveries import deliveries_for
from taskengine_core.errors import NotFoundError, TaskEngineError

from taskengine_core.store import deliveries as queue

from . import store as db
from .config import Preparer, WebhookSettings
from .delivery import Attempt, Decision, attempt
from .egress import EgressPolicy, GuardedResolver, RecordingConnector

log = logging.getLogger("taskengine.webhook")


class BrokenPolicy(EgressPolicy):
    """``settings.webhook`` has a bad network: refuse everything, saying why."""

    def __init__(self, reason: str) -> None:
        super().__init__()
        self.reason = reason

    def refused(self, address: str) -> str | None:
        return f"egress refused: {self.reason}"


def policy_for(conf: WebhookSettings) -> EgressPolicy:
    try:
        return EgressPolicy(conf.deny, conf.allow)
    except ValueError as exc:
        log.error("%s; every webhook delivery is refused until it is fixed", exc)
        return BrokenPolicy(str(exc))


def make_session(policy: EgressPolicy) -> aiohttp.ClientSession:
    """A client whose every connection goes through the egress check. Call inside a loop."""
    connector = RecordingConnector(limit=0, limit_per_host=0, ttl_dns_cache=10,
                                     resolver=GuardedResolver(policy))
    return aiohttp.ClientSession(connector=connector, trust_env=False,
                                 cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=False)


def after_commit(info: EngineInfo, decided: list[tuple[Attempt, Decision]]) -> None:
    """Log each attempt's outcome; emit ``webhook.exhausted`` / ``webhook.failed`` events."""
    for a, d in decided:
        m = a.message
        if d.status == "delivered":
            log.debug("webhook %s: delivery %s delivered (attempt %d, HTTP %s)",
                      m.webhook, m.id, a.number, a.status_code)
            continue
        if d.status == "pending":
            log.info("webhook %s: delivery %s attempt %d failed: %s; next attempt at %s",
                     m.webhook, m.id, a.number, a.error, d.next_attempt_at.isoformat())
            continue
        if a.gone:
            log.warning("webhook %s disabled: it answered 410 Gone to delivery %s; "
                        "'taskengine webhooks enable %s' turns it back on", m.webhook, m.id, m.webhook)
        log.warning("webhook %s: delivery %s %s after %d attempt(s): %s",
                    m.webhook, m.id, d.status, a.number, a.error)
        emit_final(info, d.status, {
            "delivery_id": m.id, "webhook": m.webhook, "status": d.status, "attempts": a.number,
            "status_code": a.status_code, "error": a.error, "task": m.task, "run_id": m.run_id,
            "event_id": m.event_id}, a.number)


def emit_final(info: EngineInfo, status: str, data: dict, number: int) -> None:
    kind = "webhook.exhausted" if status == "exhausted" else "webhook.failed"
    try:
        info.emit(kind, data, source="webhook", id=f"{data['delivery_id']}:{status}:{number}")
    except Exception:  # noqa: BLE001 - an event that cannot be emitted must not stop deliveries
        log.exception("could not emit %s for delivery %s", kind, data["delivery_id"])


def deliver_now(info: EngineInfo, store, delivery_id: str) -> tuple[Attempt, Decision]:
    """Make one attempt of a pending delivery in this process and record it (the same claim as
    the dispatcher's, so a running engine cannot send it at the same time)."""
    from taskengine_core.runs import lease_owner

    now, owner = datetime.now(timezone.utc), lease_owner()
    deliveries = deliveries_for(store)
    with deliveries.write() as conn:
        dests, conf = db.destinations(conn), db.settings(conn)
        row = queue.status_of(conn, delivery_id)
        if row is None:
            raise NotFoundError(f"no webhook delivery {delivery_id!r}; see 'taskengine webhooks deliveries'")
        dest = dests.get(row[0])
        lease = dest.timeout if dest else 15.0
        message = db.claim_one(conn, delivery_id, now, owner, lease)
        if message is None:
            raise TaskEngineError(f"delivery {delivery_id} is {row[1]}, not pending; try again")

    async def once() -> Attempt:
        policy = policy_for(conf)
        session = make_session(policy)
        try:
            return await attempt(session, dest, message, policy=policy,
                                 prepare=Preparer(info.resolve, info.redact, ttl=0))
        finally:
            await session.close()

    try:
        result = asyncio.run(once())
    except BaseException:
        with deliveries.write() as conn:
            db.release(conn, [delivery_id], owner)
        raise
    with deliveries.write() as conn:
        decided = db.record(conn, [result], dests, conf, datetime.now(timezone.utc), owner)
    if not decided:  # pragma: no cover - only if this claim outlived its lease
        raise TaskEngineError(f"delivery {delivery_id} was taken over by a running engine while "
                              "this attempt was made; see 'taskengine webhooks delivery'")
    after_commit(info, decided)
    return decided[0]
