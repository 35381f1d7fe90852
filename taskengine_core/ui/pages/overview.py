"""``/ui``: health, queue depth, runs by status over 24 hours, the latest failures, what fires next."""

from __future__ import annotations

from datetime import timedelta

from taskengine_core.clock import to_iso
from taskengine_core.store import dashboard as q


def routes(dash):
    async def overview(request):
        now = dash.engine.clock.now()
        data = await dash.query(_overview, to_iso(now - timedelta(hours=24)))
        template = "_overview.html" if request.headers.get("HX-Request") else "overview.html"
        return await dash.render_page(request, template, {**data, "health": _health(dash.engine, data)})

    return [("GET", "/ui", overview)]


def _overview(store, since: str) -> dict:
    conn = store.conn
    return {"depth": q.queue_depth(conn), "by_status": q.runs_by_status_since(conn, since),
            "failures": q.latest_failures(conn), "next": q.next_fires(conn)}


def _health(engine, data: dict) -> dict:
    loop = engine._loop_thread
    running = loop is not None and loop.is_alive() and not engine.stopping.is_set()
    return {"ok": running, "text": "running" if running else "the engine loop is not running",
            "ingress": engine.ingress.address if engine.ingress else None}
