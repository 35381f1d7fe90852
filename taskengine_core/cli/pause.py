"""``taskengine pause`` / ``resume``: hold every run (events are still accepted and evaluated)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import click

from taskengine_core.cli._app import App, pass_app


def _until(text: str | None, now: datetime) -> datetime | None:
    if text is None:
        return None
    from taskengine_core.clock import from_iso
    from taskengine_core.durations import parse_duration

    try:
        seconds = parse_duration(text)
    except (ValueError, TypeError):
        seconds = None
    if seconds is not None:
        if seconds <= 0:
            raise click.BadParameter("must be in the future", param_hint="--until")
        return now + timedelta(seconds=seconds)
    if not any(c in text[10:] for c in "Z+-"):
        raise click.BadParameter(f"{text!r}: give a duration (2h, 30m) or a date-time with a zone "
                                 "offset (2027-01-04T08:00:00+01:00)", param_hint="--until")
    try:
        when = from_iso(text)
    except ValueError:
        raise click.BadParameter(f"{text!r}: give a duration (2h, 30m) or a date-time with a zone "
                                 "offset (2027-01-04T08:00:00+01:00)", param_hint="--until") from None
    if when <= now:
        raise click.BadParameter(f"{text} has passed", param_hint="--until")
    return when


@click.command()
@click.option("--until", "until_text", metavar="TIME",
              help="End the pause by itself: a duration (2h) or a date-time with offset.")
@click.option("--reason", default="", metavar="TEXT", help="Why (shown in logs, audit and /healthz).")
@click.option("--json", "as_json", is_flag=True, help="Print the pause as JSON.")
@pass_app
def pause(app: App, until_text: str | None, reason: str, as_json: bool) -> None:
    """Hold every run: events are still accepted and evaluated, and schedules still come due,
    but their runs wait until 'taskengine resume' (or --until). Audited. A task run by hand in
    the foreground ('taskengine tasks run NAME') still runs."""
    from taskengine_core import holds
    from taskengine_core.apply import current_actor
    from taskengine_core.clock import Clock

    now = Clock().now()
    until = _until(until_text, now)
    store = app.store()
    with store.write() as db:
        state = holds.pause(db.conn, now, until=until, reason=reason, actor=current_actor(), source="cli")
    if as_json:
        click.echo(json.dumps(state, indent=2))
    else:
        click.echo("paused: runs wait" + (f" until {state['until']}" if state["until"] else " until 'taskengine resume'")
                   + (f" ({reason})" if reason else "") + "; events are still accepted")


@click.command()
@pass_app
def resume(app: App) -> None:
    """End a pause: runs that waited are due at once. Audited."""
    from taskengine_core import holds
    from taskengine_core.apply import current_actor
    from taskengine_core.clock import Clock

    store = app.store()
    with store.write() as db:
        ended = holds.resume(db.conn, Clock().now(), actor=current_actor(), source="cli")
    if ended is None:
        click.echo("not paused: nothing to resume", err=True)
        return
    click.echo(f"resumed (paused since {ended['since']})")
