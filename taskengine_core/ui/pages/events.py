"""``/ui/events``: the event rules, the latest events, and the explanation of any event by id
(the same answers as ``taskengine logs explain``)."""

from __future__ import annotations

from aiohttp import web

from taskengine_core import catalog
from taskengine_core.errors import NotFoundError
from taskengine_core.store import dashboard as q


def routes(dash):
    async def events_page(request):
        event_id = request.query.get("explain", "").strip()
        if event_id:
            raise web.HTTPSeeOther(f"/ui/events/{event_id}")
        rules = await dash.query(catalog.list_objects, "event")
        recent = await dash.query(lambda store: q.recent_events(store.conn))
        return await dash.render_page(request, "events.html", {"rules": rules, "recent": recent})

    async def explain(request):
        from taskengine_core.task_logs import explain_event

        event_id = request.match_info["id"]
        try:
            answer = await dash.query(explain_event, event_id)
        except NotFoundError as exc:
            response = await dash.render_page(request, "refused.html", {"reason": str(exc), "status": 404})
            response.set_status(404)
            return response
        return await dash.render_page(request, "explain.html", {"answer": answer})

    return [("GET", "/ui/events", events_page), ("GET", "/ui/events/{id}", explain)]
