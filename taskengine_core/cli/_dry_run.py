"""``taskengine tasks run NAME --dry-run``: show what a run would do, and do nothing."""

from __future__ import annotations

import json

import click

from taskengine_core.cli._app import App


def parse_event(text: str | None) -> dict | None:
    """``--event JSON`` (``{"type": ..., "data": {...}}``) as templates see an event."""
    if text is None:
        return None
    from taskengine_core.cli._parse import loads_strict
    from taskengine_core.clock import Clock, to_iso
    from taskengine_core.errors import EventError
    from taskengine_core.events import event_from_json

    try:
        body = loads_strict(text)
    except ValueError as exc:
        raise click.UsageError(f"--event is not valid JSON: {exc}") from None
    try:
        event = event_from_json(body, default_source="cli")
    except EventError as exc:
        raise click.UsageError(f"--event: {exc}") from None
    return {"id": event.id, "type": event.type, "source": event.source, "source_id": event.source_id,
            "time": to_iso(event.time or Clock().now()), "data": event.data}


def stored_event(app: App, event_id: str) -> dict:
    """``--event EVENT_ID``: a stored event, as templates see it."""
    from taskengine_core.errors import NotFoundError
    from taskengine_core.store.dashboard import event

    found = event(app.store().conn, event_id)
    if found is None:
        raise NotFoundError(f"no event with id {event_id!r}; see 'taskengine logs list' or 'taskengine emit'")
    return {key: found[key] for key in ("id", "type", "source", "source_id", "time", "data")}


def dry_run(app: App, name: str, overrides: dict, event: dict | None, as_json: bool) -> None:
    from taskengine_core.clock import Clock
    from taskengine_core.errors import NotFoundError
    from taskengine_core.model import load_runtime
    from taskengine_core.preview import preview_run

    runtime = load_runtime(app.store())
    task = runtime.tasks.get(name)
    if task is None:
        raise NotFoundError(f"no task named {name!r}; see 'taskengine tasks list'")
    preview = preview_run(task, app.registry, now=Clock().now(), event=event,
                          trigger="event" if event else "manual", overrides=overrides)
    result = {"dry_run": True, **preview.as_dict(), "event": event,
              "settings": task.action.split(".", 1)[0] if task.action.split(".", 1)[0] in runtime.settings else None}
    if as_json:
        click.echo(json.dumps(result, indent=2, default=str, ensure_ascii=False))
    else:
        click.echo(f"dry run: task {name!r} would run action {task.action}"
                   + (f" from plugin {preview.plugin}" if preview.plugin else ""))
        if result["settings"]:
            click.echo(f"settings: settings.{result['settings']} (secret references resolved at run time)")
        click.echo("with:")
        for line in json.dumps(preview.params, indent=2, default=str, ensure_ascii=False).splitlines():
            click.echo("  " + line)
    for problem in preview.problems:
        click.echo(f"error: {problem}", err=True)
    click.echo("nothing was run and nothing was written", err=True)
    if preview.problems:
        raise SystemExit(1)
