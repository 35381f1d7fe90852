"""``/ui/tasks``: every task with its state and links; a task's page with its last runs;
enable, disable and run now (with parameters), each audited under the token's name."""

from __future__ import annotations

import json

from aiohttp import web

from taskengine_core import catalog
from taskengine_core.errors import NotFoundError, TaskEngineError
from taskengine_core.store import dashboard as q
from taskengine_core.ui.app import Refused
from taskengine_core.ui.audit import audited


def routes(dash):
    async def tasks_page(request):
        tasks = await dash.query(catalog.list_tasks)
        return await dash.render_page(request, "tasks.html", {"tasks": tasks})

    async def task_page(request):
        name = request.match_info["name"]
        try:
            task = await dash.query(catalog.get_task, name)
        except NotFoundError:
            raise web.HTTPNotFound(text=f"no task named {name!r}") from None
        last = await dash.query(lambda store: q.task_runs(store.conn, name))
        return await dash.render_page(request, "task.html", {"task": task, "runs": last})

    def toggle(enabled: bool):
        async def handler(request):
            grant = dash.require(request, "operator")
            name = request.match_info["name"]
            try:
                await dash.query(lambda store: catalog.set_enabled(
                    store, "task", name, enabled, actor=grant.actor, source="ui"))
            except NotFoundError as exc:
                raise Refused(404, str(exc)) from None
            if request.headers.get("HX-Request"):
                task = await dash.query(catalog.get_task, name)
                return await dash.render_fragment(request, "_task_row.html", {"task": task})
            raise web.HTTPSeeOther(f"/ui/tasks/{name}")

        return handler

    async def run_now(request):
        grant = dash.require(request, "operator")
        name = request.match_info["name"]
        form = await request.post()
        params = _params(form.get("params"))
        try:
            run_id = await audited(dash, grant, "run", "task", name, {"params": params},
                                   lambda: dash.engine.queue_run(name, params, actor=grant.actor))
        except TaskEngineError as exc:
            raise Refused(404 if isinstance(exc, NotFoundError) else 400, str(exc)) from None
        if request.headers.get("HX-Request"):
            return web.Response(status=204, headers={"HX-Trigger": "run-queued",
                                                     "HX-Location": f"/ui/runs/{run_id}"})
        raise web.HTTPSeeOther(f"/ui/runs/{run_id}")

    return [("GET", "/ui/tasks", tasks_page), ("GET", "/ui/tasks/{name}", task_page),
            ("POST", "/ui/tasks/{name}/enable", toggle(True)),
            ("POST", "/ui/tasks/{name}/disable", toggle(False)),
            ("POST", "/ui/tasks/{name}/run", run_now)]


def _params(text) -> dict | None:
    """The run's parameters: a JSON object, or nothing."""
    if not isinstance(text, str) or not text.strip():
        return None
    from taskengine_core.cli._parse import loads_strict

    try:
        params = loads_strict(text)
    except ValueError as exc:
        raise Refused(400, f"parameters are not valid JSON: {exc}; nothing was run") from None
    if not isinstance(params, dict):
        raise Refused(400, 'parameters must be a JSON object such as {"vm": "gpu-alice"}; nothing was run')
    return params
