"""``/ui``: health, queue depth, runs by status over 24 hours, the latest failures, what fires next."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from taskengine_core.clock import to_iso
from taskengine_core.store import dashboard as q
from taskengine_core.store import leases


def routes(dash):
    async def overview(request):
        now = dash.engine.clock.now()
        data = await dash.query(_overview, to_iso(now - timedelta(hours=24)), now)
        template = "_overview.html" if request.headers.get("HX-Request") else "overview.html"
        health = await asyncio.to_thread(_health, dash.engine, data)
        return await dash.render_page(request, template, {**data, "health": health})

    return [("GET", "/ui", overview)]


def _overview(store, since: str, now) -> dict:
    from taskengine_core.holds import current_pause

    conn = store.conn
    return {"depth": q.queue_depth(conn), "by_status": q.runs_by_status_since(conn, since),
            "failures": q.latest_failures(conn), "next": q.next_fires(conn),
            "pause": current_pause(conn, now), "nodes": leases.nodes(conn), "leases": leases.holders(conn)}


def _health(engine, data: dict) -> dict:
    """What /healthz says (the ingress' health check), in a sentence."""
    ingress = engine.ingress
    if ingress is None:
        return {"ok": True, "text": "running", "reasons": []}
    status, body = ingress.health.report()
    reasons = body.get("reasons", [])
    return {"ok": status == 200, "text": "running" if status == 200 else "failing", "reasons": reasons}
