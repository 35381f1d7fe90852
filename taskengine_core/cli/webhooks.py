"""``taskengine webhooks``: webhook destinations."""

from __future__ import annotations

import click

from taskengine_core.cli._app import App, pass_app
from taskengine_core.cli._listing import list_kind
from taskengine_core.cli._output import json_option


def _summary(spec: dict) -> dict:
    return {"url": spec.get("url"), "method": spec.get("method", "POST"),
            "auth": (spec.get("auth") or {}).get("type", "none"), "signed": bool(spec.get("secret"))}


@click.group(invoke_without_command=True)
@json_option
@click.pass_context
def webhooks(ctx: click.Context, as_json: bool) -> None:
    """List webhook destinations (the default)."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(webhooks_list, as_json=as_json)


@webhooks.command("list")
@json_option
@pass_app
def webhooks_list(app: App, as_json: bool) -> None:
    """List webhook destinations and the tasks that use them."""
    list_kind(app, "webhook", ["name", "enabled", "method", "url", "auth", "signed", "tasks"], _summary, as_json=as_json)
