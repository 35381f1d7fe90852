"""Waking every engine that shares a PostgreSQL database: ``NOTIFY`` after a commit, ``LISTEN``
in each engine. A notification only says "look now": it is not durable, so work committed while
an engine was not listening is still found at its next poll."""

from __future__ import annotations

import logging
import threading
from typing import Callable

import psycopg

from taskengine_core.store.postgres.connection import connect

log = logging.getLogger("taskengine.wakeup")
CHANNEL = "taskengine_wake"


def notify(conn) -> None:
    """Wake the engines listening on this database (sent at once outside a transaction, at
    commit inside one). ``conn``: a :class:`PgConnection`."""
    conn.execute(f"NOTIFY {CHANNEL}")


def poke_url(url: str) -> int:
    """Wake the engines of the database at ``url`` from a process that holds no connection (the
    CLI after ``emit``). Returns 1, or 0 when the server could not be reached."""
    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f"NOTIFY {CHANNEL}")
        return 1
    except psycopg.Error:
        return 0


class NotifyListener:
    """A thread with a connection of its own that calls ``on_wake`` for each notification."""

    def __init__(self, url: str, on_wake: Callable[[], None]) -> None:
        self.url = url
        self.on_wake = on_wake
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._conn: psycopg.Connection | None = None

    def start(self) -> bool:
        try:
            self._conn = connect(self.url, application_name="taskengine-listen")
            self._conn.execute(f"LISTEN {CHANNEL}")
        except psycopg.Error as exc:
            log.warning("not listening for wake-ups (polling instead): %s", str(exc).splitlines()[0])
            return False
        self._thread = threading.Thread(target=self._listen, name="taskengine-pg-listen", daemon=True)
        self._thread.start()
        return True

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        if self._conn is not None:
            try:
                self._conn.close()
            except psycopg.Error:
                pass

    def _listen(self) -> None:
        while not self._stop.is_set():
            try:
                for _ in self._conn.notifies(timeout=0.5, stop_after=1):
                    self.on_wake()
            except psycopg.Error:
                if self._stop.is_set():
                    return
                self._stop.wait(1.0)  # the server went away: the loop's poll still finds work
                try:
                    self._conn = connect(self.url, application_name="taskengine-listen")
                    self._conn.execute(f"LISTEN {CHANNEL}")
                except psycopg.Error:
                    continue
