"""``taskengine events``: the event rules."""

from __future__ import annotations

import click

from taskengine_core.cli._app import App, pass_app
from taskengine_core.cli._listing import list_kind
from taskengine_core.cli._output import json_option


def _summary(name: str, spec: dict) -> dict:
    on = spec.get("on")
    return {"on": on if isinstance(on, str) else ", ".join(on or []),
            "when": spec.get("when"), "delay": spec.get("delay")}


@click.group(invoke_without_command=True)
@json_option
@click.pass_context
def events(ctx: click.Context, as_json: bool) -> None:
    """List event rules (the default)."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(events_list, as_json=as_json)


@events.command("list")
@json_option
@pass_app
def events_list(app: App, as_json: bool) -> None:
    """List event rules: what they match and which tasks they fire."""
    list_kind(app, "event", ["name", "enabled", "on", "when", "delay", "tasks"], _summary, as_json=as_json)
