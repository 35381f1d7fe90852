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
        assert checkpointed_here(db_path)
        assert _autocheckpoint(engine.store) == 0
        assert _autocheckpoint(Store(db_path, migrate=False)) == 0  # opened while it runs
        ids = [engine.emit("bench.tick", {"n": n}) for n in range(300)]  # 300 commits
        # no commit checkpoints now, yet the events reach the database file
        _wait_until(lambda: _events_in_database_file(db_path) == 300)
    finally:
        engine.stop(1)
    assert not checkpointed_here(db_path)
    assert _autocheckpoint(engine.store) == 1000  # restored for whatever the process does next
    assert len(set(ids)) == 300


def test_a_checkpointer_restarts_a_wal_that_outgrew_its_limit(tmp_path, monkeypatch):
    """Under a steady stream of commits a passive checkpoint may never let SQLite rewind the
    WAL; past RESTART_FRAMES the checkpointer waits for a moment when it can."""
    path = tmp_path / "t.db"
    store = Store(path)
    store.checkpoint_in_commits(False)
    with store.write() as db:
        db.conn.execute("CREATE TABLE filler (x BLOB)")
    for _ in range(40):
        with store.write() as db:
            db.conn.execute("INSERT INTO filler VALUES (randomblob(8000))")
    wal = path.with_name("t.db-wal")
    grown = wal.stat().st_size
    keeper, conn = Checkpointer(path), sqlite3.connect(path)
    assert keeper._checkpoint(conn) == "passive"  # 80-odd frames: under the default limit
    with store.write() as db:
        db.conn.execute("INSERT INTO filler VALUES (randomblob(8000))")
    monkeypatch.setattr(checkpoint, "RESTART_FRAMES", 1)
    assert keeper._checkpoint(conn) == "restart"
    with store.write() as db:  # the first write after it rewinds the WAL
        db.conn.execute("INSERT INTO filler VALUES (randomblob(10))")
    assert wal.stat().st_size <= grown  # rewound and reused, not grown
    assert store.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert store.conn.execute("SELECT count(*) FROM filler").fetchone()[0] == 42


def test_a_checkpoint_that_fails_is_logged_and_the_thread_goes_on(tmp_path, caplog):
    keeper = Checkpointer(tmp_path / "t.db")
    closed = sqlite3.connect(tmp_path / "t.db")
    closed.close()
    assert keeper._checkpoint(closed) is None
    assert [r.getMessage() for r in caplog.records] == [
        f"checkpoint of {tmp_path / 't.db'} failed: Cannot operate on a closed database."]
