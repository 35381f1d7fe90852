"""``taskengine plugins``: what is installed and what each plugin provides."""

from __future__ import annotations

import click

from taskengine_core.cli._app import App, pass_app
from taskengine_core.cli._output import emit_rows, json_option


@click.command()
@click.option("--all", "show_all", is_flag=True, help="Include the core's own hooks.")
@json_option
@pass_app
def plugins(app: App, show_all: bool, as_json: bool) -> None:
    """List installed plugins with their version and the actions, triggers, notifiers and
    settings they provide. Broken plugins are listed with their error."""
    manager = app.manager
    grouped = manager.registry().by_plugin()
    rows = []
    for name, info in sorted(manager.info.items()):
        if name == "core" and not show_all:
            continue
        items = grouped.get(info, [])
        provides = {kind: sorted(i.name for i in items if i.kind == kind)
                    for kind in ("action", "trigger", "notifier", "settings")}
        plugin = manager.pm.get_plugin(name)
        hooks = sorted(h.name for h in manager.pm.get_hookcallers(plugin) or []) if plugin else []
        rows.append({
            "name": name, "distribution": info.distribution, "version": info.version,
            "status": "ok", "actions": provides["action"], "triggers": provides["trigger"],
            "notifiers": provides["notifier"], "settings": provides["settings"], "hooks": hooks,
            # where each trigger runs when several engines share a database
            "runs_on": {i.name: i.runs_on for i in items if i.kind == "trigger"},
        })
    for broken in manager.broken:
        rows.append({"name": broken.name, "distribution": broken.distribution, "version": "",
                     "status": f"broken: {broken.error}", "actions": [], "triggers": [],
                     "notifiers": [], "settings": [], "hooks": [], "runs_on": {}})
    emit_rows(rows, ["name", "distribution", "version", "status", "actions", "triggers", "notifiers"],
              as_json=as_json, empty="no plugins installed")
