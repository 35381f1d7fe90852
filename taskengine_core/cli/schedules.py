"""``taskengine schedules``: schedules and when they fire next."""

from __future__ import annotations

import click

from taskengine_core.cli._app import App, pass_app
from taskengine_core.cli._listing import list_kind, toggle
from taskengine_core.cli._output import json_option


def _summariser(app: App):
    """Describe each schedule and its next fire time, in its own zone and in UTC."""
    from taskengine_core.clock import Clock, from_iso
    from taskengine_core.recurrence import compile_schedule

    store = app.store()
    zone = _default_zone(store)
    from taskengine_core.store.dashboard import schedule_states

    state = {name: row["next_fire"] for name, row in schedule_states(store.conn).items()}
    now = Clock().now()

    def summarise(name: str, spec: dict) -> dict:
        recurrence = compile_schedule(spec, zone)
        upcoming = from_iso(state[name]) if state.get(name) else recurrence.next_after(now)
        local = upcoming.astimezone(recurrence.timezone) if upcoming else None
        return {"when": recurrence.describe(), "timezone": str(recurrence.timezone),
                "next_local": local.isoformat(timespec="minutes") if local else None,
                "next_utc": upcoming.strftime("%Y-%m-%dT%H:%MZ") if upcoming else None}

    return summarise


def _default_zone(store) -> str:
    import json

    from taskengine_core.store.config import setting

    spec = setting(store.conn, "timezone")
    return json.loads(spec) if spec else "UTC"


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
    list_kind(app, "schedule", ["name", "enabled", "when", "next_local", "next_utc", "tasks"],
              _summariser(app), as_json=as_json)


@schedules.command("next")
@click.argument("name")
@click.option("--count", default=5, show_default=True, type=click.IntRange(1, 10000))
@click.option("--after", "after", metavar="ISO-DATETIME",
              help="Start after this instant (default: now); without an offset it is read as UTC.")
@json_option
@pass_app
def schedules_next(app: App, name: str, count: int, after: str | None, as_json: bool) -> None:
    """Print the next COUNT fire times of a schedule, in its zone and in UTC. With --after the
    output is deterministic."""
    import json

    from taskengine_core.clock import Clock, from_iso
    from taskengine_core.errors import NotFoundError
    from taskengine_core.recurrence import compile_schedule

    from taskengine_core.store.config import object_spec

    store = app.store()
    spec = object_spec(store.conn, "schedule", name)
    if spec is None:
        raise NotFoundError(f"no schedule named {name!r}; see 'taskengine schedules list'")
    try:
        start = from_iso(after) if after else Clock().now()
    except ValueError:
        raise click.UsageError(f"--after {after!r}: expected an ISO date-time such as 2026-12-01T09:00Z") from None
    recurrence = compile_schedule(json.loads(spec), _default_zone(store))
    times = recurrence.upcoming(start, count)
    zone = recurrence.timezone
    rows = [{"local": t.astimezone(zone).isoformat(), "utc": t.strftime("%Y-%m-%dT%H:%M:%SZ")} for t in times]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        click.echo(f"{r['local']}  ({r['utc']})")
    if len(rows) < count:
        click.echo(f"no more fire times after {len(rows)}", err=True)


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
