"""The dashboard's pages, one module per page group; each gives its routes."""

from __future__ import annotations


def all_routes(dash) -> list[tuple[str, str, object]]:
    from taskengine_core.ui.pages import admin, engine, events, overview, runs, schedules, tasks, webhooks

    routes: list[tuple[str, str, object]] = []
    for module in (overview, engine, runs, tasks, schedules, events, webhooks, admin):
        routes += module.routes(dash)
    return routes
