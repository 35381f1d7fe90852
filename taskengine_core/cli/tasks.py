"""``taskengine tasks``: list, show, enable and disable tasks."""

from __future__ import annotations

import click

from taskengine_core.cli._app import App, pass_app
from taskengine_core.cli._listing import toggle
from taskengine_core.cli._output import emit_object, emit_rows, json_option


@click.group(invoke_without_command=True)
@json_option
@click.pass_context
def tasks(ctx: click.Context, as_json: bool) -> None:
    """List tasks (the default), or show, enable and disable one."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(tasks_list, as_json=as_json)


@tasks.command("list")
@json_option
@pass_app
def tasks_list(app: App, as_json: bool) -> None:
    """List tasks with their action, state and triggers."""
    from taskengine_core.catalog import list_tasks

    rows = list_tasks(app.store())
    for row in rows:
        row["state"] = "retired" if row["retired_at"] else ("enabled" if row["enabled"] else "disabled")
    emit_rows(rows, ["name", "action", "state", "schedules", "events", "webhooks"],
              as_json=as_json, empty="no tasks: define some in a rule file and run 'taskengine apply'")


@tasks.command("show")
@click.argument("name")
@json_option
@pass_app
def tasks_show(app: App, name: str, as_json: bool) -> None:
    """Show one task in full."""
    from taskengine_core.catalog import get_task
    from taskengine_core.secrets import redact_by_key

    row = get_task(app.store(), name)
    row["spec"] = redact_by_key(row["spec"])
    emit_object(row, as_json=as_json)


@tasks.command("enable")
@click.argument("name")
@pass_app
def tasks_enable(app: App, name: str) -> None:
    """Let a task fire from its schedules and events again."""
    toggle(app, "task", name, True)


@tasks.command("disable")
@click.argument("name")
@pass_app
def tasks_disable(app: App, name: str) -> None:
    """Stop a task firing from triggers; it can still be run by hand."""
    toggle(app, "task", name, False)


@tasks.command("run")
@click.argument("name")
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE",
              help="Override a parameter of the task (repeatable).")
@click.option("--no-wait", is_flag=True, help="Queue the run for the engine and return at once.")
@click.option("--event", "event_id", metavar="EVENT_ID",
              help="Run it for this stored event: its templates see it as 'event'.")
@json_option
@pass_app
def tasks_run(app: App, name: str, params: tuple[str, ...], no_wait: bool, as_json: bool,
              event_id: str | None = None) -> None:
    """Run a task now, by hand, even if it is disabled. Waits for the result (retries included)
    and exits 1 if the run failed."""
    from taskengine_core.cli._parse import parse_pairs
    from taskengine_core.engine import Engine
    from taskengine_core.task_logs import show_run

    overrides = parse_pairs(params, what="--param")
    store = app.store()
    engine = Engine(store.path, manager=app.manager, workers=1)
    run_id = engine.queue_run(name, overrides, actor="cli", event_id=event_id)
    if no_wait:
        click.echo(run_id)
        return
    engine.executor.start()
    status = engine.execute(run_id)
    engine.executor.stop(0)
    run = show_run(engine.store, run_id)
    if as_json:
        emit_object(run, as_json=True)
    else:
        click.echo(run_id)
        if run["output"] is not None:
            emit_object({"output": run["output"]}, as_json=False)
    duration = f" in {run['duration']:.2f}s" if run["duration"] is not None else ""
    click.echo(f"run {run_id} {status}{duration}" + (f": {run['error']}" if run["error"] else ""), err=True)
    if status != "succeeded":
        raise SystemExit(1)
