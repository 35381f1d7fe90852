"""Durable state for plugin code: a small key/value store in the engine's database, scoped to
one source or one plugin's actions.

An event source keeps its position here (a file's inode and offset, a journal cursor, the last
power state it saw per VM) so that a restart or a lost connection neither loses nor repeats
events; an action keeps what it saw last (the pending updates) so it reports only changes.
Plugins never see SQL or the database path: they get a ``PluginState`` in their context.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Iterator

from taskengine_core.clock import Clock, to_iso
from taskengine_core.store import Store
from taskengine_core.store import plugin_state as sql

MAX_VALUE_BYTES = 1 << 20  # a position or a small set, not a data store


class PluginState:
    """Key/value state scoped to ``scope``. Values are anything JSON can hold; each call is its
    own transaction, and :meth:`update` writes several keys in one. Safe to use from the thread
    the engine hands it to (each thread gets its own connection through ``store``)."""

    def __init__(self, store: Callable[[], Store], scope: str, clock: Clock | None = None) -> None:
        self._store = store
        self.scope = scope
        self._clock = clock or Clock()

    def get(self, key: str, default: Any = None) -> Any:
        value = sql.get(self._store().conn, self.scope, key)
        return default if value is None else json.loads(value)

    def items(self, prefix: str = "") -> Iterator[tuple[str, Any]]:
        """Every (key, value) whose key starts with ``prefix``, in key order."""
        for key, value in sql.items(self._store().conn, self.scope, prefix):
            yield key, json.loads(value)

    def set(self, key: str, value: Any) -> None:
        self.update({key: value})

    def update(self, values: dict[str, Any], *, delete: list[str] | tuple = ()) -> None:
        """Write ``values`` and remove the keys in ``delete``, all in one transaction."""
        encoded = {key: _encode(key, value) for key, value in values.items()}
        with self._store().write() as db:
            if encoded:
                sql.put(db.conn, self.scope, encoded, to_iso(self._clock.now()))
            if delete:
                sql.delete(db.conn, self.scope, list(delete))

    def delete(self, key: str) -> None:
        self.update({}, delete=[key])


def _encode(key: str, value: Any) -> str:
    if not isinstance(key, str) or not key:
        raise ValueError(f"state keys are non-empty strings, not {key!r}")
    text = json.dumps(value, separators=(",", ":"), allow_nan=False)
    if len(text) > MAX_VALUE_BYTES:
        raise ValueError(f"state value for {key!r} is {len(text)} bytes; the limit is {MAX_VALUE_BYTES}")
    return text
