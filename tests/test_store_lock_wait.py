"""A SQLite write waits for another connection's write lock by trying again itself, every 0.1
to 1 ms, instead of in SQLite's busy handler (whose sleeps grow to 100 ms, so a process that
writes often starved one that writes now and then: benchmarks/bench_lock_handoff.py). How long
it waits is still the connection's busy_timeout, and that setting is the same afterwards."""

from __future__ import annotations

import sqlite3
import threading

import pytest

from taskengine_core.errors import StoreBusy, StoreError
from taskengine_core.store import open_store
from taskengine_core.store.runs import limit_lock_wait


@pytest.fixture
def store(db_path):
    store = open_store(db_path)
    yield store
    store.close()


@pytest.fixture
def other(db_path, store):
    """Another connection to the same file, as another process would hold one."""
    conn = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
    yield conn
    if conn.in_transaction:
        conn.execute("ROLLBACK")
    conn.close()


def _busy_timeout(store) -> int:
    return store.conn.execute("PRAGMA busy_timeout").fetchone()[0]


def _kv_count(db_path) -> int:
    conn = sqlite3.connect(db_path)
    try:
        return conn.execute("SELECT count(*) FROM kv").fetchone()[0]
    finally:
        conn.close()


def test_a_write_takes_the_lock_once_the_other_writer_lets_go(store, other, db_path):
    with store.write() as db:
        db.conn.execute("CREATE TABLE kv (k TEXT PRIMARY KEY, v TEXT)")
    other.execute("BEGIN IMMEDIATE")
    threading.Timer(0.3, other.execute, ("ROLLBACK",)).start()
    with store.write() as db:
        db.conn.execute("INSERT INTO kv VALUES ('a', '1')")
    assert _kv_count(db_path) == 1
    assert _busy_timeout(store) == 30000


def test_a_write_gives_up_after_the_connections_busy_timeout_and_changes_nothing(store, other, db_path):
    with store.write() as db:
        db.conn.execute("CREATE TABLE kv (k TEXT PRIMARY KEY, v TEXT)")
    limit_lock_wait(store.conn, 0.2)
    other.execute("BEGIN IMMEDIATE")
    with pytest.raises(StoreError, match=r"database .*: database is locked$"):
        with store.write() as db:
            db.conn.execute("INSERT INTO kv VALUES ('a', '1')")
    assert not store.conn.in_transaction
    assert _busy_timeout(store) == 200  # the wait it was given, kept
    other.execute("ROLLBACK")
    assert _kv_count(db_path) == 0
    with store.write() as db:
        db.conn.execute("INSERT INTO kv VALUES ('a', '1')")
    assert _kv_count(db_path) == 1


def test_a_store_that_does_not_wait_is_refused_at_once(store, other):
    store.waits = False
    other.execute("BEGIN IMMEDIATE")
    with pytest.raises(StoreBusy, match="database is locked"):
        with store.write():
            pass
    assert _busy_timeout(store) == 0 and not store.conn.in_transaction
