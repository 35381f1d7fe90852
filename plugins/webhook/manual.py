"""What ``taskengine webhooks test`` and ``redeliver`` do, outside a running engine: queue a
delivery and make its attempt now, in this process, logged like any other."""

from __future__ import annotations

import json
from datetime import datetime, timezone

from taskengine_core.clock import to_iso
from taskengine_core.context import EngineInfo
from taskengine_core.deliveries import deliveries_for
from taskengine_core.errors import NotFoundError, TaskEngineError

from taskengine_core.store import deliveries as queue

from . import store as db
from .delivery import Attempt, Decision
from .sender import deliver_now


def services(store, hook) -> EngineInfo:
    """What the dispatcher gets from the engine, built for a CLI process."""
    from taskengine_core.events import Event, insert_events
    from taskengine_core.secrets import SecretResolver

    secrets = SecretResolver(hook)

    def emit(type: str, data: dict | None = None, *, source: str = "webhook",  # noqa: A002
             id: str | None = None) -> str:  # noqa: A002
        return insert_events(store, [Event(type, data or {}, source=source, source_id=id)])[0]

    return EngineInfo(emit=emit, resolve=secrets.resolve, redact=secrets.redactor.scrub,
                      deliveries=deliveries_for(store))


def queue_test(store, name: str, now: datetime) -> str:
    """Queue a ``taskengine.test`` delivery to ``name`` (one attempt, no retries); its id."""
    delivery_id = db.new_message_id()
    body = {"type": "taskengine.test", "timestamp": to_iso(now), "webhook": name,
            "message": "a test delivery from taskengine"}
    with deliveries_for(store).write() as conn:
        if not db.destinations(conn, [name]):
            raise NotFoundError(f"no webhook named {name!r}; see 'taskengine webhooks list'")
        db.enqueue(conn, [{"id": delivery_id, "webhook": name, "type": "taskengine.test",
                              "body": json.dumps(body, separators=(",", ":")),
                              "content_type": "application/json", "max_attempts": 1}], now)
    return delivery_id


def requeue(store, delivery_id: str, now: datetime) -> None:
    """Make a delivery pending again (same ``webhook-id``, fresh retry budget), due now."""
    with deliveries_for(store).write() as conn:
        row = queue.status_of(conn, delivery_id)
        if row is None:
            raise NotFoundError(f"no webhook delivery {delivery_id!r}; see 'taskengine webhooks deliveries'")
        dest = db.destinations(conn, [row[0]]).get(row[0])
        if dest is None:
            raise TaskEngineError(f"the webhook {row[0]!r} no longer exists; define it again to redeliver")
        if not dest.enabled:
            raise TaskEngineError(f"webhook {row[0]!r} is disabled; 'taskengine webhooks enable "
                                  f"{row[0]}' first")
        state = db.redeliver(conn, delivery_id, dest.retries, now)
        if state["status"] == "sending":
            raise TaskEngineError(f"delivery {delivery_id} is being sent right now; try again later")


def send_test(info: EngineInfo, store, name: str) -> tuple[Attempt, Decision]:
    """Queue a test delivery to ``name`` and send it now, in this process."""
    return deliver_now(info, store, queue_test(store, name, datetime.now(timezone.utc)))


def redeliver(info: EngineInfo, store, delivery_id: str) -> tuple[Attempt, Decision] | None:
    """Queue a delivery again and attempt it now. Returns ``None`` when a running engine
    claimed it first (it sends it)."""
    requeue(store, delivery_id, datetime.now(timezone.utc))
    try:
        return deliver_now(info, store, delivery_id)
    except TaskEngineError as exc:
        if "not pending" in str(exc):
            return None
        raise
