"""Write transactions for the webhook plugin's own connections.

SQLite lets one writer in at a time. A connection that finds the write lock taken waits in
SQLite's busy handler, which sleeps 1, 2, 5, 10... milliseconds between tries: under load (the
executor, the intake and the dispatcher all writing small transactions) those sleeps, not the
writes, set the pace. So this plugin's connections get ``busy_timeout = 0`` and wait here
instead: in-process writers queue on a lock (woken as soon as it is free), and the lock held by
another connection is retried every 0.1-2 ms, for up to 30 s.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from contextlib import contextmanager
from typing import Iterator

from taskengine_core.errors import StoreError
from taskengine_core.store import Store

TIMEOUT = 30.0
_locks: dict[str, threading.Lock] = {}
_guard = threading.Lock()


def open_store(path: str) -> Store:
    store = Store(path, migrate=False, create=False)  # never a new empty file where the engine's was
    store.conn.execute("PRAGMA busy_timeout = 0")
    return store


def _lock_for(path: str) -> threading.Lock:
    with _guard:
        return _locks.setdefault(str(path), threading.Lock())


@contextmanager
def transaction(store: Store) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` on ``store``'s connection (rolled back on error)."""
    conn = store.conn
    with _lock_for(store.path):
        store.check_file()  # deleted or replaced under the engine: refuse, do not write into the void
        _begin(conn, store.path)
        try:
            yield conn
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")


def _begin(conn: sqlite3.Connection, path) -> None:
    deadline, wait = time.monotonic() + TIMEOUT, 0.0001
    while True:
        try:
            conn.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise StoreError(f"database {path}: {exc}") from None
            if time.monotonic() > deadline:
                raise StoreError(f"database {path}: still locked after {TIMEOUT:g}s") from None
        time.sleep(wait)
        wait = min(wait * 2, 0.002)
