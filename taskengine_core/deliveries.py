"""The webhook delivery queue as plugin code gets it (plugin API 2): ``ctx.deliveries`` in an
action, ``engine.deliveries`` in the lifecycle hooks.

It stands for the engine's database, whichever it is (an SQLite file or a PostgreSQL server
shared by several engines), without naming it: plugin code opens transactions with
:meth:`Deliveries.write` / :meth:`Deliveries.read` and passes the connection to the functions
of :mod:`taskengine_core.store.deliveries`, which hold every statement. It also carries the
in-process signal "deliveries were queued" from an action to the dispatcher of the same engine.
"""

from __future__ import annotations

import os
import threading
from contextlib import contextmanager
from typing import TYPE_CHECKING, Callable, Iterator

from taskengine_core.store import config

if TYPE_CHECKING:  # pragma: no cover
    from taskengine_core.store import Store


class Deliveries:
    """Webhook deliveries in the engine's database. Thread-safe: ``store`` gives each calling
    thread its own connection."""

    def __init__(self, store: Callable[[], "Store"]) -> None:
        self._store = store
        self._listeners: list[Callable[[str | None], None]] = []
        self._lock = threading.Lock()

    def store(self) -> "Store":
        """The calling thread's connection to the engine's database (do not close it)."""
        return self._store()

    @contextmanager
    def write(self) -> Iterator:
        """One write transaction (all or nothing); yields the connection for the functions of
        :mod:`taskengine_core.store.deliveries`."""
        with self._store().write() as db:
            yield db.conn

    @contextmanager
    def read(self) -> Iterator:
        """A consistent read of the queue that does not hold up writers."""
        with config.snapshot(self._store()) as conn:
            yield conn

    def subscribe(self, listener: Callable[[str | None], None]) -> Callable[[], None]:
        """Call ``listener(webhook)`` whenever :meth:`queued` is; returns the unsubscribe."""
        with self._lock:
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return unsubscribe

    def queued(self, webhook: str | None = None) -> None:
        """Tell this engine's dispatcher that deliveries (to ``webhook``, or any) were committed,
        so it looks now rather than at its next poll. Other engines on the database find them
        at their next poll."""
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            listener(webhook)


_opened: dict[str, Deliveries] = {}
_opened_lock = threading.Lock()
MAX_OPENED = 8


def deliveries_for(database) -> Deliveries:
    """The queue of ``database``: a :class:`Deliveries` (returned as is), a ``Store`` (used by
    the calling thread only) or the database as the CLI's ``--db`` takes it, a path or a
    ``postgresql://`` URL (each thread gets its own connection; never creates a database)."""
    if isinstance(database, Deliveries):
        return database
    if hasattr(database, "write") and hasattr(database, "conn"):
        return Deliveries(lambda: database)
    key = os.fspath(database)
    with _opened_lock:
        found = _opened.get(key)
        if found is None:
            found = _opened[key] = open_deliveries(key)
            while len(_opened) > MAX_OPENED:  # a few databases at most; the oldest is let go
                _opened.pop(next(iter(_opened)))
        return found


def open_deliveries(target: str | os.PathLike) -> Deliveries:
    """A new :class:`Deliveries` on the database ``target`` names (a path or a
    ``postgresql://`` URL), with connections of its own, one per thread that uses it."""
    return Deliveries(_thread_opener(os.fspath(target)))


def _thread_opener(target: str) -> Callable[[], "Store"]:
    local = threading.local()

    def store() -> "Store":
        found = getattr(local, "store", None)
        if found is None:
            from taskengine_core.store import open_store

            found = local.store = open_store(target, migrate=False, create=False)
        return found

    return store
