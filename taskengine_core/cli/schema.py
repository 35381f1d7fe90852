"""``taskengine schema``: the JSON Schema of rule files, for editors and CI."""

from __future__ import annotations

import json

import click

from taskengine_core.cli._app import App, pass_app


@click.command()
@pass_app
def schema(app: App) -> None:
    """Print the JSON Schema of rule files, including every installed plugin's parameters."""
    from taskengine_core.rules.schema import rule_file_schema

    click.echo(json.dumps(rule_file_schema(app.registry), indent=2))
