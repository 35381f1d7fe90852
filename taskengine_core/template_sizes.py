"""Sizes and shapes of template values, measured without building them (for the sandbox's
guards), and the ``tojson`` filter. Private to the templating package."""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Iterator, KeysView, ValuesView
from typing import Any

from jinja2.runtime import Undefined


def _is_lazy(value: Any) -> bool:
    """A one-shot iterator (generator, map, filter...): its items are not in memory yet."""
    return isinstance(value, Iterator) and not isinstance(value, (str, bytes, list, tuple, dict))


class _Ticking:
    """A loop's iterable that charges each item to the render's deadline."""

    __slots__ = ("_items", "_env")

    def __init__(self, items: Any, env: Any) -> None:
        self._items, self._env = items, env

    def __iter__(self):
        tick = self._env.tick
        for item in self._items:
            tick()
            yield item

    def __len__(self) -> int:
        return len(self._items)  # TypeError for generators: the loop then counts as it goes


def _weight(value: Any, budget: int) -> int:
    """Roughly how many characters ``str(value)`` has, counted only until ``budget`` is passed.

    Lists repeat references cheaply (``[big] * n``); their text does not come cheap.
    """
    total, stack = 0, [value]
    while stack and total <= budget:
        item = stack.pop()
        if isinstance(item, (str, bytes)):
            total += len(item)
        elif isinstance(item, (list, tuple, set, frozenset)):
            total += 2 + 2 * len(item)
            stack.extend(item)
        elif isinstance(item, dict):
            total += 2 + 4 * len(item)
            stack.extend(item.keys())
            stack.extend(item.values())
        else:
            total += 1
    return total


def _json_size(value: Any, indent: int, budget: int) -> int:
    """Roughly how long ``json.dumps(value, indent=indent)`` is, counted until past ``budget``:
    each item of a nested container gets its own line, indented by its depth."""
    total, stack = 0, [(value, 0)]
    while stack and total <= budget:
        item, depth = stack.pop()
        if isinstance(item, dict):
            total += 2 + depth * indent
            for k, v in item.items():
                total += 4 + (depth + 1) * indent + _weight(k, budget)
                stack.append((v, depth + 1))
        elif isinstance(item, (list, tuple, set, frozenset)):
            total += 2 + depth * indent
            for v in item:
                total += 2 + (depth + 1) * indent
                stack.append((v, depth + 1))
        else:
            total += _weight(item, budget) + 2
    return total


def _replaced_size(s: Any, old: Any, new: Any, count: Any) -> int:
    if isinstance(s, bytes) and isinstance(old, bytes) and isinstance(new, bytes):
        s, old, new = s.decode("latin-1"), old.decode("latin-1"), new.decode("latin-1")
    if not (isinstance(s, str) and isinstance(old, str) and isinstance(new, str)):
        return 0
    hits = s.count(old) if old else len(s) + 1
    if isinstance(count, int) and count >= 0:
        hits = min(hits, count)
    return len(s) + hits * max(0, len(new) - len(old))


def _json_default(value: Any) -> Any:
    if isinstance(value, Undefined):
        value._fail_with_undefined_error()
    if isinstance(value, (_dt.datetime, _dt.date, _dt.time)):
        return value.isoformat()
    if isinstance(value, (set, frozenset, range, KeysView, ValuesView)):
        return list(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _tojson(value: Any, indent: int | None = None) -> str:
    """Serialise to JSON text (not HTML-escaped: the output goes to machines, not browsers)."""
    return json.dumps(value, ensure_ascii=False, indent=indent, default=_json_default)
