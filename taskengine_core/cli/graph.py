"""``taskengine graph``: how tasks, schedules, event rules and webhooks link, for a picture."""

from __future__ import annotations

import click

from taskengine_core.cli._app import App, pass_app

_SHAPES = {"schedule": ("([", "])"), "event": ("{{", "}}"), "task": ("[", "]"), "webhook": ("[/", "/]")}


def _node_id(kind: str, name: str) -> str:
    safe = "".join(c if c.isalnum() else "_" for c in name)
    return f"{kind}_{safe}"


@click.command()
@click.option("--format", "fmt", type=click.Choice(["mermaid", "dot"]), default="mermaid", show_default=True)
@pass_app
def graph(app: App, fmt: str) -> None:
    """Print the links between schedules, event rules, tasks and webhooks as a Mermaid
    flowchart or a Graphviz dot graph."""
    from taskengine_core.store.dashboard import wiring

    nodes, edges = wiring(app.store().conn)  # the same links the dashboard's picture draws
    if fmt == "mermaid":
        click.echo("flowchart LR")
        for kind, name in nodes:
            left, right = _SHAPES[kind]
            click.echo(f'  {_node_id(kind, name)}{left}"{kind}: {name}"{right}')
        for a, b in edges:
            click.echo(f"  {_node_id(*a)} --> {_node_id(*b)}")
        return
    click.echo("digraph taskengine {\n  rankdir=LR;")
    shapes = {"schedule": "ellipse", "event": "diamond", "task": "box", "webhook": "parallelogram"}
    for kind, name in nodes:
        click.echo(f'  {_node_id(kind, name)} [label="{kind}: {name}", shape={shapes[kind]}];')
    for a, b in edges:
        click.echo(f"  {_node_id(*a)} -> {_node_id(*b)};")
    click.echo("}")
