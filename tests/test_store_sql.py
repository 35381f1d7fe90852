"""The store's SQL helpers (taskengine_core/store/sql.py)."""

import sqlite3

import pytest

from taskengine_core.store.sql import savepoint


def test_a_savepoint_that_cannot_be_rolled_back_lets_the_first_error_through(tmp_path):
    # the block's own error is what the caller judges (a lost connection is transient, say); a
    # failing ROLLBACK TO (here: the savepoint is gone with the transaction) must not replace it
    conn = sqlite3.connect(tmp_path / "db", isolation_level=None)
    conn.execute("CREATE TABLE t (x)")
    conn.execute("BEGIN")
    with pytest.raises(LookupError, match="the block's own error"):
        with savepoint(conn, "sp"):
            conn.execute("INSERT INTO t VALUES (1)")
            conn.execute("ROLLBACK")  # the transaction, and the savepoint with it, are gone
            raise LookupError("the block's own error")
    assert conn.execute("SELECT count(*) FROM t").fetchone()[0] == 0


def test_a_savepoint_undoes_only_its_block(tmp_path):
    conn = sqlite3.connect(tmp_path / "db", isolation_level=None)
    conn.execute("CREATE TABLE t (x)")
    conn.execute("BEGIN")
    conn.execute("INSERT INTO t VALUES (1)")
    with pytest.raises(ValueError):
        with savepoint(conn, "sp"):
            conn.execute("INSERT INTO t VALUES (2)")
            raise ValueError
    conn.execute("COMMIT")
    assert [r[0] for r in conn.execute("SELECT x FROM t")] == [1]
