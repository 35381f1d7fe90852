"""Parsing KEY=VALUE arguments and durations given on the command line."""

from __future__ import annotations

import json
import math

import click


def parse_pairs(pairs: tuple[str, ...], *, what: str) -> dict:
    """``user=alice count=3 vm.name=x`` -> ``{"user": "alice", "count": 3, "vm": {"name": "x"}}``.
    Values that parse as JSON (numbers, true, null, [..], {..}) keep their type; anything else,
    ``NaN``, ``Infinity`` and ``1e999`` included (not JSON, or not a float), is a string."""
    out: dict = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise click.UsageError(f"bad {what} {pair!r}: expected KEY=VALUE")
        try:
            value = loads_strict(raw)
        except ValueError:
            value = raw
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise click.UsageError(f"bad {what} {pair!r}: {part!r} is already a value")
        node[parts[-1]] = value
    return out


def loads_strict(text: str):
    """``json.loads`` without Python's extensions: ``NaN``, ``Infinity`` and ``-Infinity`` are
    errors, as in JSON itself, and so is a number too large for a float (``1e999``)."""
    return json.loads(text, parse_constant=_not_json, parse_float=_finite)


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
