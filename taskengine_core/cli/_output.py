"""One way to print listings: an aligned table for people, ``--json`` for programs."""

from __future__ import annotations

import functools
import json
from typing import Any, Callable, Sequence

import click


def json_option(func: Callable) -> Callable:
    """Adds ``--json`` to a listing command; the command receives ``as_json``."""

    @click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        return func(*args, **kwargs)

    return wrapper


def emit_rows(rows: Sequence[dict], columns: Sequence[str], *, as_json: bool, empty: str) -> None:
    """Print ``rows`` as JSON (every key) or as a table of ``columns``; ``empty`` goes to stderr."""
    if as_json:
        click.echo(json.dumps(list(rows), indent=2, default=str, ensure_ascii=False))
        return
    if not rows:
        click.echo(empty, err=True)
        return
    table = [[_cell(row.get(col)) for col in columns] for row in rows]
    widths = [max(len(col), *(len(r[i]) for r in table)) for i, col in enumerate(columns)]
    click.echo("  ".join(col.upper().ljust(w) for col, w in zip(columns, widths)).rstrip())
    for r in table:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip())


def emit_object(obj: dict, *, as_json: bool) -> None:
    """Print one object: JSON, or ``key: value`` lines."""
    if as_json:
        click.echo(json.dumps(obj, indent=2, default=str, ensure_ascii=False))
        return
    width = max((len(k) for k in obj), default=0)
    for key, value in obj.items():
        if isinstance(value, (dict, list)):
            value = json.dumps(value, default=str, ensure_ascii=False)
        click.echo(f"{key.ljust(width)}  {_cell(value, limit=None)}")


def _cell(value: Any, limit: int | None = 60) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        value = ", ".join(str(v) for v in value)
    text = str(value).replace("\n", " ")
    if limit and len(text) > limit:
        text = text[: limit - 1] + "…"
    return text
