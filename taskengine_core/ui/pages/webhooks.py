"""``/ui/webhooks``: destinations and deliveries with every attempt; redeliver one, send a test.
Both are queued for the engine's dispatcher (never sent on the page's request) and audited."""

from __future__ import annotations

from aiohttp import web

from taskengine_core import catalog
from taskengine_core.errors import NotFoundError, TaskEngineError
from taskengine_core.ui.app import Refused
from taskengine_core.ui.audit import audited

STATUSES = ("pending", "sending", "delivered", "failed", "exhausted")


def routes(dash):
    if dash.engine.manager.pm.get_plugin("webhook") is None:
        return []  # the plugin is blocked or not installed: no page to show
    from taskengine_webhook.manual import queue_test, requeue
    from taskengine_webhook.running import wake_for
    from taskengine_webhook import store as deliveries

    async def webhooks_page(request):
        status = request.query.get("status") if request.query.get("status") in STATUSES else None
        name = request.query.get("webhook") or None
        destinations = await dash.query(catalog.list_objects, "webhook")
        rows = await dash.query(lambda store: deliveries.list_deliveries(store.conn, name, status, 100))
        return await dash.render_page(request, "webhooks.html", {
            "destinations": destinations, "deliveries": rows, "statuses": STATUSES,
            "filters": {"status": status or "", "webhook": name or ""}})

    async def delivery_page(request):
        delivery_id = request.match_info["id"]
        row = await dash.query(lambda store: deliveries.get_delivery(store.conn, delivery_id))
        if row is None:
            raise web.HTTPNotFound(text=f"no webhook delivery {delivery_id!r}")
        return await dash.render_page(request, "delivery.html", {"delivery": row})

    async def redeliver(request):
        grant = dash.require(request, "operator")
        delivery_id = request.match_info["id"]
        try:
            await audited(dash, grant, "redeliver", "webhook_delivery", delivery_id, {},
                          lambda: requeue(dash.engine._thread_store(), delivery_id,
                                                    dash.engine.clock.now()))
        except TaskEngineError as exc:
            raise Refused(404 if isinstance(exc, NotFoundError) else 409, str(exc)) from None
        wake_for(dash.engine.db_path)
        raise web.HTTPSeeOther(f"/ui/webhooks/deliveries/{delivery_id}")

    async def send_test(request):
        grant = dash.require(request, "operator")
        name = request.match_info["name"]
        try:
            delivery_id = await audited(dash, grant, "test", "webhook", name, {},
                                        lambda: queue_test(dash.engine._thread_store(), name,
                                                                     dash.engine.clock.now()))
        except TaskEngineError as exc:
            raise Refused(404 if isinstance(exc, NotFoundError) else 409, str(exc)) from None
        wake_for(dash.engine.db_path, name)
        raise web.HTTPSeeOther(f"/ui/webhooks/deliveries/{delivery_id}")

    return [("GET", "/ui/webhooks", webhooks_page),
            ("GET", "/ui/webhooks/deliveries/{id}", delivery_page),
            ("POST", "/ui/webhooks/deliveries/{id}/redeliver", redeliver),
            ("POST", "/ui/webhooks/{name}/test", send_test)]
