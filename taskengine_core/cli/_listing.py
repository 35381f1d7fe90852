"""Shared shape of the simple listings (schedules, events, webhooks)."""

from __future__ import annotations

import click

from taskengine_core.cli._app import App
from taskengine_core.cli._output import emit_rows


def list_kind(app: App, kind: str, columns: list[str], summarise, *, as_json: bool) -> None:
    from taskengine_core.catalog import list_objects
    from taskengine_core.secrets import redact_by_key

    rows = list_objects(app.store(), kind)
    for row in rows:
        row.update(summarise(row["name"], row["spec"]))
        row["spec"] = redact_by_key(row["spec"])
    plural = {"event": "event rules"}.get(kind, kind + "s")
    emit_rows(rows, columns, as_json=as_json,
              empty=f"no {plural}: define some in a rule file and run 'taskengine apply'")


def toggle(app: App, kind: str, name: str, enabled: bool) -> None:
    from taskengine_core.catalog import set_enabled

    from taskengine_core.wakeup import poke

    changed = set_enabled(app.store(), kind, name, enabled)
    if changed:
        poke(app.store())  # a running engine picks the change up now
    state = "enabled" if enabled else "disabled"
    click.echo(f"{kind} {name} {state}" if changed else f"{kind} {name} was already {state}", err=True)
