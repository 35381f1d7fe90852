"""``taskengine audit``: who changed what, and when."""

from __future__ import annotations

import click

from taskengine_core.cli._app import App, pass_app
from taskengine_core.cli._output import emit_rows, json_option


@click.group(invoke_without_command=True)
@json_option
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 100000), help="Newest N entries.")
@click.pass_context
def audit(ctx: click.Context, as_json: bool, limit: int) -> None:
    """Show the audit log (the default), newest first."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(audit_list, as_json=as_json, limit=limit)


@audit.command("list")
@json_option
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 100000), help="Newest N entries.")
@click.option("--kind", help="Only this kind: task, schedule, event, webhook, setting.")
@click.option("--name", help="Only objects with this name.")
@pass_app
def audit_list(app: App, as_json: bool, limit: int, kind: str | None = None, name: str | None = None) -> None:
    """List configuration changes: when, who, what, and the changed fields (secrets masked)."""
    from taskengine_core.catalog import list_audit

    rows = list_audit(app.store(), limit=limit, kind=kind, name=name)
    for row in rows:
        row["fields"] = sorted(row["changes"])
    emit_rows(rows, ["time", "actor", "action", "kind", "name", "fields"], as_json=as_json,
              empty="the audit log is empty")
