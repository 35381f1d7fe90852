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
    conn = app.store().conn
    nodes = [("schedule", r[0]) for r in conn.execute("SELECT name FROM schedules ORDER BY name")]
    nodes += [("event", r[0]) for r in conn.execute("SELECT name FROM event_rules ORDER BY name")]
    nodes += [("task", r[0]) for r in conn.execute("SELECT name FROM tasks ORDER BY name")]
    nodes += [("webhook", r[0]) for r in conn.execute("SELECT name FROM webhooks ORDER BY name")]
    edges = [(("schedule", s), ("task", t)) for t, s in conn.execute("SELECT task, schedule FROM task_schedules ORDER BY 2, 1")]
    edges += [(("event", e), ("task", t)) for t, e in conn.execute("SELECT task, event_rule FROM task_events ORDER BY 2, 1")]
    edges += [(("task", t), ("webhook", w)) for t, w in conn.execute("SELECT task, webhook FROM task_webhooks ORDER BY 1, 2")]
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
