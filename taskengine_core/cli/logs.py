"""``taskengine logs``: runs, attempts, and why an event did or did not fire."""

from __future__ import annotations

import click

from taskengine_core.cli._app import App, pass_app
from taskengine_core.cli._output import emit_object, emit_rows, json_option
from taskengine_core.cli._parse import parse_duration_option

STATUSES = ("pending", "running", "succeeded", "failed", "cancelled", "skipped", "interrupted")


@click.group(invoke_without_command=True)
@json_option
@click.pass_context
def logs(ctx: click.Context, as_json: bool) -> None:
    """Task logs: list runs (the default), show one, explain an event, prune old ones."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(logs_list, as_json=as_json)


@logs.command("list")
@click.option("--task", help="Only runs of this task.")
@click.option("--status", type=click.Choice(STATUSES), help="Only runs in this state.")
@click.option("--since", metavar="DURATION", help="Only runs created within this long, e.g. 1h, 2d.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 100000))
@json_option
@pass_app
def logs_list(app: App, task=None, status=None, since=None, limit=50, as_json=False) -> None:
    """List runs, newest first."""
    from taskengine_core.task_logs import list_runs

    rows = list_runs(app.store(), task=task, status=status,
                     since_seconds=parse_duration_option(since, "--since"), limit=limit)
    for row in rows:
        row["trigger"] = _trigger_text(row)
        row["attempts"] = f"{row['attempt']}/{row['max_attempts']}"
        if row["duration"] is not None and not as_json:
            row["duration"] = f"{row['duration']:.3f}s"
    emit_rows(rows, ["id", "task", "status", "trigger", "created_at", "duration", "attempts", "error"],
              as_json=as_json, empty="no runs match")
    from taskengine_core.holds import pause_note

    if note := pause_note(app.store().conn):  # why pending runs are not starting
        click.echo(note, err=True)


def _trigger_text(row: dict) -> str:
    if row["trigger"] == "event":
        return f"event {row['event_id']} ({row['rule']})"
    if row["trigger"] == "schedule":
        return f"schedule {row['schedule']} @ {row['slot']}"
    return row["trigger"]


@logs.command("show")
@click.argument("run_id")
@json_option
@pass_app
def logs_show(app: App, run_id: str, as_json: bool) -> None:
    """Show one run: what triggered it, every attempt, its output and error."""
    from taskengine_core.task_logs import show_run

    run = show_run(app.store(), run_id)
    if as_json:
        emit_object(run, as_json=True)
        return
    attempts, decisions = run.pop("attempts"), run.pop("decisions")
    emit_object({k: v for k, v in run.items() if v is not None}, as_json=False)
    for a in attempts:
        click.echo(f"\nattempt {a['number']}: {a['outcome']}  {a['started_at']} -> {a['finished_at']}  "
                   f"({a['duration'] or 0:.3f}s, {a['plugin']} {a['plugin_version']})")
        if a["error"]:
            click.echo(f"  error: {a['error']}")
        if a["traceback"]:
            click.echo("  " + a["traceback"].rstrip().replace("\n", "\n  "))
    for d in decisions:
        click.echo(f"\n{d['time']}  {d['decision']}: {d['reason']}")


@logs.command("explain")
@click.argument("event_id")
@json_option
@pass_app
def logs_explain(app: App, event_id: str, as_json: bool) -> None:
    """Why an event did or did not fire: what was decided when it was evaluated, and how every
    event rule judges it now."""
    from taskengine_core.task_logs import explain_event

    result = explain_event(app.store(), event_id)
    if as_json:
        emit_object(result, as_json=True)
        return
    event = result["event"]
    click.echo(f"event {event['id']}  type {event['type']}  source {event['source']}  time {event['time']}")
    if result["duplicate_of"]:
        click.echo(f"duplicate of event {result['duplicate_of']}: it triggered nothing")
    elif result["processed_at"] is None:
        click.echo("not evaluated yet: it waits in the inbox for the engine")
    else:
        click.echo(f"evaluated at {result['processed_at']}")
    if result["decisions"]:
        click.echo("\ndecisions:")
    elif result["processed_at"] is None:
        click.echo("\ndecisions: none yet")
    else:
        click.echo("\ndecisions: none (no rule matched when it was evaluated)")
    for d in result["decisions"]:
        target = " ".join(x for x in (f"rule {d['rule']}" if d["rule"] else "",
                                      f"task {d['task']}" if d["task"] else "",
                                      f"run {d['run_id']}" if d["run_id"] else "") if x)
        click.echo(f"  {d['decision']:<10} {target}: {d['reason']}")
    click.echo("\nevent rules now:" if result["rules_now"] else "\nevent rules now: none defined")
    for r in result["rules_now"]:
        click.echo(f"  {'MATCH' if r['matched'] else 'no':<6} {r['rule']}: {r['reason']}")


@logs.command("prune")
@click.option("--older-than", "older_than", required=True, metavar="DURATION", help="e.g. 90d")
@pass_app
def logs_prune(app: App, older_than: str) -> None:
    """Delete finished runs and processed events older than DURATION. Unfinished runs are kept."""
    from taskengine_core.task_logs import prune

    removed = prune(app.store(), parse_duration_option(older_than, "--older-than"))
    click.echo(f"pruned {removed['runs']} runs and {removed['events']} events", err=True)
