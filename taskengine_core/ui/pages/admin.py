"""``/ui/audit``, ``/ui/plugins`` and ``/ui/graph``: who changed what, what is installed, and a
picture of how schedules, event rules, tasks and webhooks are wired."""

from __future__ import annotations

from taskengine_core import catalog
from taskengine_core.store import dashboard as q
from taskengine_core.ui.wiring import layout


def routes(dash):
    async def audit_page(request):
        rows = await dash.query(catalog.list_audit, 200)
        return await dash.render_page(request, "audit.html", {"rows": rows})

    async def plugins_page(request):
        manager = dash.engine.manager
        grouped = dash.engine.registry.by_plugin()
        plugins = []
        for name, info in sorted(manager.info.items()):
            items = grouped.get(info, [])
            plugins.append({"name": name, "distribution": info.distribution, "version": info.version,
                            "status": "ok", "provides": sorted((i.kind, i.name, i.description) for i in items)})
        for broken in manager.broken:
            plugins.append({"name": broken.name, "distribution": broken.distribution, "version": "",
                            "status": f"broken: {broken.error}", "provides": []})
        return await dash.render_page(request, "plugins.html", {"plugins": plugins})

    async def graph_page(request):
        nodes, edges = await dash.query(lambda store: q.wiring(store.conn))
        return await dash.render_page(request, "graph.html", {"picture": layout(nodes, edges)})

    return [("GET", "/ui/audit", audit_page), ("GET", "/ui/plugins", plugins_page),
            ("GET", "/ui/graph", graph_page)]
