"""The ``taskengine`` command. Each noun group lives in its own module, imported only when used,
so ``taskengine --help`` starts fast."""

from __future__ import annotations

import importlib

import click

from taskengine_core import DISTRIBUTION, __version__
from taskengine_core.cli._app import App, ErrorBoundaryGroup

# command name -> (module, attribute, one-line help shown by --help without importing it)
COMMANDS = {
    "validate": ("validate", "validate", "Check rule files; report every error."),
    "apply": ("apply", "apply_", "Make the database match the rule files."),
    "schema": ("schema", "schema", "Print the JSON Schema of rule files."),
    "plugins": ("plugins", "plugins", "List installed plugins and what each provides."),
    "tasks": ("tasks", "tasks", "List, show, run, enable and disable tasks."),
    "schedules": ("schedules", "schedules", "List schedules and their next fire times."),
    "events": ("events", "events", "List event rules."),
    "webhooks": ("webhooks", "webhooks", "Webhook destinations and their deliveries."),
    "audit": ("audit", "audit", "Show the audit log of configuration changes."),
    "emit": ("emit", "emit", "Put an event into the inbox."),
    "logs": ("logs", "logs", "Task logs: runs, attempts, why an event fired or not."),
    "run": ("run", "run", "Run the engine: executor, HTTP ingress, event sources."),
    "graph": ("graph", "graph", "Show how tasks, schedules, events and webhooks link."),
    "install": ("install", "install", "Install plugins with pip."),
    "uninstall": ("install", "uninstall", "Uninstall plugins with pip."),
    "rules": ("rules", "rules", "Test rule files offline against example events and times."),
    "pause": ("pause", "pause", "Hold every run (events are still accepted); audited."),
    "resume": ("pause", "resume", "End a pause: waiting runs are due at once."),
}


class LazyGroup(ErrorBoundaryGroup):
    """Imports a command's module the first time the command is looked up; plugin commands are
    collected per invocation, so the module-level group is never changed."""

    def list_commands(self, ctx):
        return sorted(set(COMMANDS) | {name for name, _ in _plugin_command_help(ctx)})

    def get_command(self, ctx, name):
        if name in COMMANDS:
            module, attr, _ = COMMANDS[name]
            return getattr(importlib.import_module(f"taskengine_core.cli.{module}"), attr)
        return _plugin_commands(ctx).get(name)

    def format_commands(self, ctx, formatter):
        rows = [(name, COMMANDS[name][2]) for name in sorted(COMMANDS)]
        rows += _plugin_command_help(ctx)
        with formatter.section("Commands"):
            formatter.write_dl(sorted(rows))


def _plugin_commands(ctx: click.Context) -> dict[str, click.Command]:
    app = ctx.find_root().ensure_object(App)
    if app.plugin_commands is None:
        holder = click.Group()
        app.manager.hook.register_commands(cli=holder)
        for name in sorted(set(holder.commands) & set(COMMANDS)):
            click.echo(f"warning: a plugin's command {name!r} clashes with the built-in command "
                       "and was ignored", err=True)
        app.plugin_commands = {n: c for n, c in holder.commands.items() if n not in COMMANDS}
    return app.plugin_commands


def _plugin_command_help(ctx: click.Context) -> list[tuple[str, str]]:
    """(name, short help) of plugin commands: from the cache when it is valid (no plugin is
    loaded, so --help starts fast), else from the plugins, and then cached."""
    from taskengine_core.cli import _help_cache

    app = ctx.find_root().ensure_object(App)
    if app.plugin_commands is None and (cached := _help_cache.load()) is not None:
        for warning in cached["warnings"]:
            click.echo(warning, err=True)
        return [tuple(row) for row in cached["commands"]]
    commands = _plugin_commands(ctx)
    rows = [(name, cmd.get_short_help_str(60)) for name, cmd in commands.items()]
    warnings = [f"warning: {b.advice()}" for b in app.manager.broken]
    _help_cache.save(rows, warnings, [f for cmd in commands.values() for f in _help_cache.source_files(cmd)])
    return rows


def _print_version(ctx: click.Context, _param, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    from taskengine_core.plugins import installed_plugins

    click.echo(f"{DISTRIBUTION} {__version__}")
    for info in installed_plugins():  # from package metadata: no plugin is imported
        click.echo(f"  plugin {info.name}: {info.distribution} {info.version}")
    ctx.exit()


@click.group(cls=LazyGroup)
@click.option("--version", is_flag=True, expose_value=False, is_eager=True,
              callback=_print_version, help="Show core and plugin versions and exit.")
@click.option("--db", "db", metavar="PATH|URL", envvar="TASKENGINE_DB",
              help="SQLite database file (or sqlite:///PATH), or postgresql://USER@HOST:PORT/DB "
                   "[env TASKENGINE_DB; default: the user data directory].")
@click.pass_context
def cli(ctx: click.Context, db: str | None) -> None:
    """taskengine: tasks fired by schedules and events, every decision logged in SQLite."""
    app = ctx.ensure_object(App)
    app.db_option = db
    ctx.call_on_close(app.close)


def main() -> None:
    cli(prog_name="taskengine")
