"""``taskengine validate``: check rule files and report every problem."""

from __future__ import annotations

import click

from taskengine_core.cli._app import App, pass_app


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@pass_app
def validate(app: App, paths: tuple[str, ...]) -> None:
    """Check rule files (or directories of them). Exit 1 on any error, listing each as
    FILE:LINE:COLUMN  PATH  MESSAGE."""
    from taskengine_core.rules.validate import check_paths

    config, problems = check_paths(paths, app.registry)
    if problems:
        for problem in problems:
            click.echo(str(problem), err=True)
        count = len(problems)
        raise click.ClickException(f"{count} error{'s' if count != 1 else ''} found")
    counts = ", ".join(f"{len(objs)} {section}" for section, objs in config.objects.items())
    click.echo(f"ok: {counts}", err=True)
