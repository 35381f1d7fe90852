"""The ``webhook.send`` action: build the body, queue the delivery durably, return its id.

The action makes no HTTP request. It queues a row in the engine's delivery queue
(``ctx.deliveries``, in the engine's database) and returns ``{"delivery_id": "msg_...", "webhook": NAME}``; the
dispatcher sends it, retries it and logs every attempt. In an engine the row is committed in the
transaction that records the run's outcome (``ctx.write_with_outcome``): the run is succeeded in
the very commit that queues its delivery, and an unknown or disabled webhook fails the run
there. Elsewhere (a context without an outcome to write with) the action commits it itself. The delivery id is derived from the run,
so a run re-run after a crash does not queue a second delivery (the action is idempotent).

Body, in order of precedence:

* ``body``: a string (a template, rendered by the engine) sent as is, with ``content_type``
  (default ``text/plain; charset=utf-8``);
* ``payload``: any JSON data whose strings are templates; the engine renders them and the
  action serialises the result with ``json.dumps`` (never by pasting text together), sent as
  ``application/json`` unless ``content_type`` says otherwise;
* neither: the default envelope::

      {"type": "<the event's type, or taskengine.task>", "timestamp": "<ISO 8601 UTC>",
       "event": {"type": ..., "id": ..., "data": {...}} or null, "task": "<task>", "run_id": "..."}

``headers`` adds request headers; they are stored with the delivery (retries and redelivery
need them), so put credentials on the destination (``auth``, ``headers`` and ``secret`` in the
``webhooks:`` section), where references are resolved at each attempt and never stored.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

from taskengine_core.clock import to_iso
from taskengine_core.context import ActionContext
from taskengine_core.errors import ActionError

from . import store as db
from .intake import commit, writer_for
from .params import SCHEMA  # noqa: F401 - re-exported

MAX_BODY = 1024 * 1024
def send(params: dict, ctx: ActionContext) -> dict:
    """Queue a webhook delivery: signed, retried and logged by the dispatcher."""
    if ctx.deliveries is None:
        raise ActionError("webhook.send runs only inside the engine (no delivery queue in its context)",
                          retryable=False)
    name = params["webhook"]
    now = datetime.now(timezone.utc)
    body, content_type, kind = build_body(params, ctx, now)
    delivery_id = f"msg_{ctx.run_id}"
    row = {"id": delivery_id, "webhook": name, "type": kind, "body": body,
           "content_type": content_type, "headers": params.get("headers") or {}, "task": ctx.task,
           "run_id": ctx.run_id, "event_id": (ctx.event or {}).get("id")}
    if ctx.outcome_writes is not None:
        # committed with the run's outcome: the run succeeds only in the commit that queues it
        ctx.write_with_outcome(writer_for(ctx.deliveries), (name, row))
    elif not commit(ctx.deliveries, name, [row]):  # not claimed in the same transaction: tell it
        ctx.deliveries.queued(name)
    return {"delivery_id": delivery_id, "webhook": name}


def enqueue(database, webhook: str, payloads: list, *, type: str = "taskengine.api") -> list[str]:  # noqa: A002
    """Queue one delivery per payload (JSON data) to ``webhook`` in one transaction, for
    Python callers; returns the delivery ids. ``database``: an engine's ``deliveries``, a
    ``Store``, or the database as ``--db`` names it. The running engines' dispatchers send them."""
    from .running import wake_for

    rows = [{"id": db.new_message_id(), "webhook": webhook, "type": type,
             "body": json.dumps(p, ensure_ascii=False, separators=(",", ":"), allow_nan=False),
             "content_type": "application/json"} for p in payloads]
    if not commit(database, webhook, rows):
        wake_for(database, webhook)  # the dispatchers of this process; others find them at their poll
    return [r["id"] for r in rows]


def build_body(params: dict, ctx: ActionContext, now: datetime) -> tuple[str, str, str]:
    """``(body text, content type, message type)`` for the action's parameters."""
    event = ctx.event
    kind = event["type"] if event else "taskengine.task"
    if "body" in params:
        text = params["body"]
        content_type = params.get("content_type") or "text/plain; charset=utf-8"
    else:
        data = params["payload"] if "payload" in params else envelope(ctx, now)
        try:
            text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ActionError(f"the payload cannot be sent as JSON: {exc}", retryable=False) from None
        content_type = params.get("content_type") or "application/json"
    if len(text.encode("utf-8")) > MAX_BODY:
        raise ActionError(f"the body is larger than {MAX_BODY} bytes", retryable=False)
    return text, content_type, kind


def envelope(ctx: ActionContext, now: datetime) -> dict:
    """The default body: what happened and which run sends it."""
    event = ctx.event
    return {
        "type": event["type"] if event else "taskengine.task",
        "timestamp": to_iso(now),
        "event": {"type": event["type"], "id": event["id"], "data": event.get("data")}
        if event else None,
        "task": ctx.task,
        "run_id": ctx.run_id,
    }
