"""Paths inside rule-file objects: parameters that name other objects (``x-taskengine-ref``),
dotted paths such as ``payload.items[2].text``, and the value at a path."""

from __future__ import annotations

import re
from typing import Any, Iterator

from taskengine_core.rules.schema import REF_KEYWORD

def _ref_params(schema: dict, path: tuple = ()) -> Iterator[tuple[tuple, str]]:
    """Parameters marked ``x-taskengine-ref: webhooks`` (a section) or
    ``x-taskengine-ref: settings.vm.hosts`` (a mapping in the settings), at any depth of plain
    objects."""
    if REF_KEYWORD in schema:
        yield path, schema[REF_KEYWORD]
    for key, sub in (schema.get("properties") or {}).items():
        if isinstance(sub, dict):
            yield from _ref_params(sub, path + (key,))


def _split_path(text: str) -> tuple:
    """``payload.items[2].text`` -> ``('payload', 'items', 2, 'text')``."""
    parts = re.findall(r"\[(\d+)\]|([^.\[\]]+)", text)
    return tuple(int(index) if index else key for index, key in parts)


def dig(value: Any, path: tuple) -> Any:
    """The value at ``path`` (keys and list indexes) inside ``value``, or None."""
    for part in path:
        try:
            value = value[part]
        except (KeyError, IndexError, TypeError):
            return None
    return value
