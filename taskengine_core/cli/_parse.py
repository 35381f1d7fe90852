"""Parsing KEY=VALUE arguments and durations given on the command line."""

from __future__ import annotations

import json
import math

import click

from taskengine_core.events import MAX_DATA_DEPTH as MAX_DEPTH  # the HTTP ingress's limit too


def parse_pairs(pairs: tuple[str, ...], *, what: str) -> dict:
    """``user=alice count=3 vm.name=x`` -> ``{"user": "alice", "count": 3, "vm": {"name": "x"}}``.
    Values that parse as JSON (numbers, true, null, [..], {..}) keep their type; anything else,
    ``NaN``, ``Infinity`` and ``1e999`` included (not JSON, or not a float), is a string."""
    out: dict = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise click.UsageError(f"bad {what} {pair!r}: expected KEY=VALUE")
        parts = key.split(".")
        if "" in parts:
            raise click.UsageError(f"bad {what} {pair!r}: empty name in {key!r}; write KEY=VALUE or "
                                   "KEY.SUBKEY=VALUE, or use --data JSON for keys with dots")
        nesting = json_depth(raw) if raw.lstrip()[:1] in ("[", "{") else 0
        if len(parts) + nesting > MAX_DEPTH:
            raise click.UsageError(f"bad {what} {key}=...: nested more than {MAX_DEPTH} levels deep")
        try:
            value = loads_strict(raw)
        except ValueError:
            value = raw
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise click.UsageError(f"bad {what} {pair!r}: {part!r} is already a value")
        node[parts[-1]] = value
    return out


def loads_strict(text: str):
    """``json.loads`` without Python's extensions: ``NaN``, ``Infinity`` and ``-Infinity`` are
    errors, as in JSON itself, and so is a number too large for a float (``1e999``); so is
    nesting deeper than ``MAX_DEPTH`` (the HTTP ingress's limit), found before parsing."""
    depth = json_depth(text)
    if depth > MAX_DEPTH:
        raise ValueError(f"nested more than {MAX_DEPTH} levels deep")
    return json.loads(text, parse_constant=_not_json, parse_float=_finite)


def json_depth(text: str) -> int:
    """How deeply ``[`` and ``{`` nest in JSON text (outside strings), without parsing it."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def _not_json(name: str):
    raise ValueError(f"{name} is not JSON")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is too large for a number")
    return value


def parse_duration_option(value: str | None, option: str) -> float | None:
    if value is None:
        return None
    from taskengine_core.durations import parse_duration

    try:
        return parse_duration(value)
    except ValueError as exc:
        raise click.UsageError(f"{option}: {exc}") from None
