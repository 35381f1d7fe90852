"""``taskengine apply``: make the database match the rule files."""

from __future__ import annotations

import click

from taskengine_core.cli._app import App, pass_app


@click.command("apply")
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--dry-run", is_flag=True, help="Show what would change; write nothing.")
@pass_app
def apply_(app: App, paths: tuple[str, ...], dry_run: bool) -> None:
    """Load rule files and apply them in one transaction: created, updated and deleted objects
    are printed and recorded in the audit log. Nothing is written if any file has an error.

    Work the last apply already did is not repeated: files whose text is unchanged since it
    (nothing else having changed the configuration) are not read again, and objects unchanged
    since it are not checked again; references between objects are always checked. When only
    some files changed, only their objects are read from the database, so keeping many
    schedules in several files makes editing one of them quick."""
    from taskengine_core.apply import apply_paths

    result = apply_paths(paths, app.registry, lambda create: app.store(create=create),
                         dry_run=dry_run, source=" ".join(paths))
    if not dry_run:
        from taskengine_core.wakeup import poke

        poke(app.store())  # a running engine picks the change up now
    for change in result.changes:
        click.echo(change.describe(dry_run))
    click.echo(result.summary(), err=True)
