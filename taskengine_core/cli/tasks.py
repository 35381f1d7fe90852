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
@click.option("--dry-run", is_flag=True,
              help="Render the parameters and show what the action would get; run nothing.")
@click.option("--event", "event_ref", metavar="EVENT_ID|JSON",
              help="Run it for this stored event (its id): its templates see it as 'event'. With "
                   "--dry-run also an event given as JSON, e.g. '{\"type\": \"user.login\", "
                   "\"data\": {\"user\": \"alice\"}}'.")
@json_option
@pass_app
def tasks_run(app: App, name: str, params: tuple[str, ...], no_wait: bool, dry_run: bool,
              event_ref: str | None, as_json: bool) -> None:
    """Run a task now, by hand, even if it is disabled. Waits for the result (retries included)
    and exits 1 if the run failed. With --dry-run, only shows what it would do."""
    from taskengine_core.cli._parse import parse_pairs
    from taskengine_core.engine import Engine
    from taskengine_core.task_logs import show_run

    overrides = parse_pairs(params, what="--param")
    given_json = event_ref is not None and event_ref.lstrip().startswith("{")
    if dry_run:
        from taskengine_core.cli._dry_run import dry_run as show_dry_run
        from taskengine_core.cli._dry_run import parse_event, stored_event

        event = parse_event(event_ref) if given_json else stored_event(app, event_ref) if event_ref else None
        return show_dry_run(app, name, overrides, event, as_json)
    if given_json:
        raise click.UsageError("--event JSON goes with --dry-run; a real run takes the id of a stored "
                               "event (see 'taskengine logs list', 'taskengine emit')")
    event_id = event_ref
    store = app.store()
    engine = Engine(app.target, manager=app.manager, workers=1)
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
