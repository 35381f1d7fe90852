"""``/ui/runs``: run history filtered by task, status, trigger and time, paged by keyset and
refreshed live; ``/ui/runs/ID``: one run's whole trace, and re-run."""

from __future__ import annotations

from aiohttp import web

from taskengine_core.clock import to_iso
from taskengine_core.errors import TaskEngineError
from taskengine_core.store import dashboard as q
from taskengine_core.ui.app import Refused
from taskengine_core.ui.audit import audited

PAGE = 50
STATUSES = ("pending", "running", "succeeded", "failed", "cancelled", "skipped", "interrupted")
TRIGGERS = ("event", "schedule", "manual", "retry")


def routes(dash):
    async def runs_page(request):
        return await dash.render_page(request, "runs.html", await _page(dash, request))

    async def runs_rows(request):
        return await dash.render_fragment(request, "_run_rows.html", await _page(dash, request))

    async def run_trace(request):
        run_id = request.match_info["id"]
        run = await dash.query(lambda store: q.run_trace(store.conn, run_id))
        if run is None:
            raise web.HTTPNotFound(text=f"no run with id {run_id!r}")
        verdicts = []
        if run["event"] is not None:  # why every other rule did or did not fire, as logs explain says
            from taskengine_core.task_logs import explain_event

            verdicts = (await dash.query(explain_event, run["event"]["id"]))["rules_now"]
        return await dash.render_page(request, "run.html", {"run": run, "verdicts": verdicts})

    async def rerun(request):
        grant = dash.require(request, "operator")
        run_id = request.match_info["id"]
        run = await dash.query(lambda store: q.run_trace(store.conn, run_id))
        if run is None:
            raise Refused(404, f"no run with id {run_id!r}")
        try:
            new_id = await audited(dash, grant, "run", "task", run["task"], {"rerun_of": run_id},
                                   lambda: dash.engine.queue_run(run["task"], run["params"], actor=grant.actor))
        except TaskEngineError as exc:
            raise Refused(409, str(exc)) from None
        raise web.HTTPSeeOther(f"/ui/runs/{new_id}")

    return [("GET", "/ui/runs", runs_page), ("GET", "/ui/runs/rows", runs_rows),
            ("GET", "/ui/runs/{id}", run_trace), ("POST", "/ui/runs/{id}/rerun", rerun)]


async def _page(dash, request) -> dict:
    query = request.query
    where = q.RunFilter(task=query.get("task") or None,
                        status=query.get("status") if query.get("status") in STATUSES else None,
                        trigger=query.get("trigger") if query.get("trigger") in TRIGGERS else None,
                        since=_time(query.get("since")), until=_time(query.get("until")))
    after = q.Cursor.decode(query.get("after"))
    rows = await dash.query(lambda store: q.runs_page(store.conn, where, after, PAGE + 1))
    more = len(rows) > PAGE
    rows = rows[:PAGE]
    following = q.Cursor(rows[-1]["created_at"], rows[-1]["seq"]).encode() if more else None
    filters = {k: query.get(k, "") for k in ("task", "status", "trigger", "since", "until")}
    return {"runs": rows, "next_cursor": following, "filters": filters, "first_page": after is None,
            "filter_query": {k: v for k, v in filters.items() if v},
            "statuses": STATUSES, "triggers": TRIGGERS}


def _time(text: str | None) -> str | None:
    """A time from a filter box (``2026-12-01``, ``2026-12-01T10:00``), as stored (UTC ISO)."""
    if not text:
        return None
    from datetime import datetime, timezone

    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise Refused(400, f"cannot read the time {text[:40]!r}; use 2026-12-01 or 2026-12-01T10:00") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return to_iso(moment)
