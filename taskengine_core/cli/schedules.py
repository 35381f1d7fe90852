"""``taskengine schedules``: schedules and when they fire next."""

from __future__ import annotations

import click

from taskengine_core.cli._app import App, pass_app
from taskengine_core.cli._listing import list_kind, toggle
from taskengine_core.cli._output import json_option


def _summary(spec: dict) -> dict:
    for form in ("once", "cron", "every"):
        if form in spec:
            return {"when": f"{form} {spec[form]}", "timezone": spec.get("timezone")}
    return {"when": "-", "timezone": spec.get("timezone")}


@click.group(invoke_without_command=True)
@json_option
@click.pass_context
def schedules(ctx: click.Context, as_json: bool) -> None:
    """List schedules (the default)."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(schedules_list, as_json=as_json)


@schedules.command("list")
@json_option
@pass_app
def schedules_list(app: App, as_json: bool) -> None:
    """List schedules and the tasks they drive."""
    list_kind(app, "schedule", ["name", "enabled", "when", "timezone", "tasks"], _summary, as_json=as_json)


@schedules.command("enable")
@click.argument("name")
@pass_app
def schedules_enable(app: App, name: str) -> None:
    """Let a schedule fire again."""
    toggle(app, "schedule", name, True)


@schedules.command("disable")
@click.argument("name")
@pass_app
def schedules_disable(app: App, name: str) -> None:
    """Stop a schedule firing (each skipped slot is logged)."""
    toggle(app, "schedule", name, False)
