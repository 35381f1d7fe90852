"""``taskengine emit``: put an event into the inbox."""

from __future__ import annotations

import click

from taskengine_core.cli._app import App, pass_app
from taskengine_core.cli._parse import MAX_DEPTH, loads_strict, parse_pairs
from taskengine_core.events import nested_deeper


@click.command()
@click.argument("type_", metavar="TYPE")
@click.argument("pairs", nargs=-1, metavar="[KEY=VALUE]...")
@click.option("--data", "data_json", metavar="JSON", help="Event data as a JSON object (KEY=VALUE pairs are merged in).")
@click.option("--source", default="cli", show_default=True, help="Who produced the event.")
@click.option("--id", "source_id", metavar="ID", help="The producer's id: the same source and id twice triggers once.")
@pass_app
def emit(app: App, type_: str, pairs: tuple[str, ...], data_json: str | None, source: str,
         source_id: str | None) -> None:
    """Commit an event to the inbox and print its id. The running engine evaluates it; if no
    engine runs, it waits in the inbox until one starts."""
    from taskengine_core.events import event_from_json, insert_events
    from taskengine_core.store.logs import duplicate_of
    from taskengine_core.wakeup import poke

    data: dict = {}
    if data_json is not None:
        try:
            data = loads_strict(data_json)
        except ValueError as exc:
            raise click.UsageError(f"--data is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise click.UsageError("--data must be a JSON object, e.g. '{\"user\": \"alice\"}'")
    data.update(parse_pairs(pairs, what="event field"))
    if nested_deeper(data):
        raise click.UsageError(f"event data nested more than {MAX_DEPTH} levels deep")
    body = {"type": type_, "data": data, "source": source}
    if source_id is not None:
        body["id"] = source_id
    event = event_from_json(body, default_source="cli")
    store = app.store()
    event_id = insert_events(store, [event])[0]
    poke(store)  # a running engine evaluates it now, not at its next poll
    dup = duplicate_of(store.conn, event_id)
    click.echo(event_id)
    if dup:
        click.echo(f"duplicate of event {dup} (same source and id): it triggers nothing", err=True)
