"""While the engine runs, a thread of its own checkpoints the WAL; commits do not."""

from __future__ import annotations

import sqlite3
import time

from taskengine_core.engine import Engine
from taskengine_core.store import Store
from taskengine_core.store import checkpoint
from taskengine_core.store.checkpoint import Checkpointer, checkpointed_here


def _autocheckpoint(store: Store) -> int:
    return store.conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0]


def _events_in_database_file(path) -> int:
    """Events in the database file itself, ignoring the WAL (what checkpoints have copied)."""
    conn = sqlite3.connect(f"file:{path}?immutable=1", uri=True)
    try:
        return conn.execute("SELECT count(*) FROM events").fetchone()[0]
    except sqlite3.DatabaseError:  # no schema copied yet, or a checkpoint is writing the file now
        return -1
    finally:
        conn.close()


def _wait_until(condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def test_the_running_engine_leaves_checkpoints_to_its_thread(db_path):
    engine = Engine(db_path)
    assert _autocheckpoint(engine.store) == 1000  # SQLite's default until the engine starts
    engine.start()
    try:
        assert checkpointed_here(str(db_path.resolve()))
        ids = [engine.emit("bench.tick", {"n": n}) for n in range(300)]  # 300 commits
        # no commit checkpoints now, yet the events reach the database file
        _wait_until(lambda: _events_in_database_file(db_path) == 300)
        assert _autocheckpoint(engine.store) == 0  # the loop's store has written since
    finally:
        engine.stop(1)
    assert not checkpointed_here(str(db_path.resolve()))
    with engine.store.write():  # the next write takes checkpoints back
        pass
    assert _autocheckpoint(engine.store) == 1000
    assert len(set(ids)) == 300


def test_a_checkpointer_restarts_a_wal_that_outgrew_its_limit(tmp_path, monkeypatch):
    """Under a steady stream of commits a passive checkpoint may never let SQLite rewind the
    WAL; past RESTART_FRAMES the checkpointer asks for a restart."""
    path = tmp_path / "t.db"
    store = Store(path)
    keeper = Checkpointer(path, interval=3600)  # running, so commits leave checkpoints to it; passes by hand
    keeper.start()
    try:
        with store.write() as db:
            db.conn.execute("CREATE TABLE filler (x BLOB)")
        for _ in range(40):
            with store.write() as db:
                db.conn.execute("INSERT INTO filler VALUES (randomblob(8000))")
        assert _autocheckpoint(store) == 0
        wal = path.with_name("t.db-wal")
        grown = wal.stat().st_size
        conn = sqlite3.connect(path)
        assert keeper._checkpoint(conn) == "passive"  # 80-odd frames: under the default limit
        with store.write() as db:
            db.conn.execute("INSERT INTO filler VALUES (randomblob(8000))")
        monkeypatch.setattr(checkpoint, "RESTART_FRAMES", 1)
        assert keeper._checkpoint(conn) == "restart"
        with store.write() as db:  # the first write after it rewinds the WAL
            db.conn.execute("INSERT INTO filler VALUES (randomblob(10))")
        assert wal.stat().st_size <= grown  # rewound and reused, not grown
    finally:
        keeper.stop()
    assert store.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert store.conn.execute("SELECT count(*) FROM filler").fetchone()[0] == 42


def test_a_restart_that_must_wait_for_a_reader_holds_up_no_writer(tmp_path, monkeypatch):
    path = tmp_path / "t.db"
    store = Store(path)
    with store.write() as db:
        db.conn.execute("CREATE TABLE t (x)")
    reader = sqlite3.connect(path, isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM t").fetchone()  # holds its snapshot: the WAL cannot rewind
    keeper = Checkpointer(path, interval=3600)
    keeper.start()
    try:
        for n in range(20):
            with store.write() as db:
                db.conn.execute("INSERT INTO t VALUES (?)", (n,))
        monkeypatch.setattr(checkpoint, "RESTART_FRAMES", 1)
        assert keeper._checkpoint(keeper_conn := sqlite3.connect(path, timeout=0)) == "busy"
        writer = sqlite3.connect(path, timeout=0, isolation_level=None)  # no busy wait: locked raises
        writer.execute("INSERT INTO t VALUES (99)")  # the checkpoint that gave up holds no lock
        writer.close()
        keeper_conn.close()
    finally:
        reader.execute("COMMIT")
        keeper.stop()


def test_connections_take_checkpoints_back_when_the_engine_stops(db_path):
    engine = Engine(db_path)
    engine.start()
    other = Store(db_path, migrate=False)  # opened while it runs, outlives it
    engine.emit("a")
    with other.write() as db:
        db.conn.execute("SELECT 1")
    assert _autocheckpoint(other) == 0
    engine.stop(1)
    with other.write() as db:
        db.conn.execute("SELECT 1")
    assert _autocheckpoint(other) == 1000


def test_two_checkpointers_on_one_file_each_keep_it_registered(tmp_path):
    path = tmp_path / "t.db"
    Store(path)
    first, second = Checkpointer(path, interval=3600), Checkpointer(path, interval=3600)
    first.start()
    second.start()
    first.stop()
    first.stop()  # twice: counted once
    assert checkpointed_here(str(path.resolve()))
    second.stop()
    assert not checkpointed_here(str(path.resolve()))


def test_an_engine_that_fails_to_start_leaves_no_checkpointer_behind(db_path):
    import socket

    from taskengine_core.ingress import IngressConfigError

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        engine = Engine(db_path)
        try:
            engine.start(listen=f"127.0.0.1:{port}")
        except IngressConfigError as exc:
            assert f"cannot listen on 127.0.0.1:{port}" in str(exc)
        else:
            raise AssertionError("the engine started on a port in use")
    assert not checkpointed_here(str(db_path.resolve()))
    assert engine.ingress is None


def test_a_checkpoint_that_fails_is_logged_and_the_thread_goes_on(tmp_path, caplog):
    keeper = Checkpointer(tmp_path / "t.db")
    closed = sqlite3.connect(tmp_path / "t.db")
    closed.close()
    assert keeper._checkpoint(closed) is None
    assert [r.getMessage() for r in caplog.records] == [
        f"checkpoint of {tmp_path / 't.db'} failed: Cannot operate on a closed database."]
