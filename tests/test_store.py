"""The store: migrations on open, WAL, explicit transactions, bad database paths."""

from __future__ import annotations

import os
import sqlite3

import pytest

from taskengine_core.errors import StoreError
from taskengine_core.store import Store, resolve_db_path
from tests.conftest import dump_db


def test_blank_database_migrates_to_the_expected_schema(tmp_path):
    store = Store(tmp_path / "fresh.db")
    tables = set(store.db.table_names())
    assert {"settings", "tasks", "schedules", "event_rules", "webhooks", "task_schedules",
            "task_events", "task_webhooks", "audit", "meta", "_sqlite_migrations"} <= tables
    assert store.db["tasks"].columns_dict == {
        "name": str, "spec": str, "enabled": int, "description": str, "file": str,
        "created_at": str, "updated_at": str, "action": str, "retired_at": str,
    }
    assert store.db["tasks"].pks == ["name"]
    assert set(store.db["task_schedules"].pks) == {"task", "schedule"}
    assert store.db["audit"].columns_dict["changes"] is str
    applied = [r["name"] for r in store.db.query("SELECT name FROM _sqlite_migrations ORDER BY rowid")]
    assert applied[0] == "m001_config"
    assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1


def test_migrations_run_once(tmp_path):
    path = tmp_path / "x.db"
    Store(path).close()
    first = dump_db(path)
    Store(path).close()
    assert dump_db(path) == first


def test_write_transaction_is_all_or_nothing(tmp_path):
    store = Store(tmp_path / "x.db")
    with pytest.raises(RuntimeError):
        with store.write() as db:
            db.execute("INSERT INTO meta (key, value) VALUES ('a', '1')")
            raise RuntimeError("boom")
    assert store.query("SELECT * FROM meta WHERE key = 'a'") == []


def test_missing_database_directory_is_a_clear_error(tmp_path):
    missing = tmp_path / "nope" / "x.db"
    with pytest.raises(StoreError) as info:
        Store(missing)
    assert str(info.value) == (
        f"database directory {missing.parent} does not exist: create it, or pass another path "
        "with --db or TASKENGINE_DB"
    )
    assert not missing.parent.exists()


def test_default_location_directory_is_created(tmp_path, monkeypatch):
    monkeypatch.delenv("TASKENGINE_DB")
    monkeypatch.setenv("TASKENGINE_HOME", str(tmp_path / "new-home"))
    path, explicit = resolve_db_path(None)
    assert path == tmp_path / "new-home" / "taskengine.db" and not explicit
    Store(path, create_dir=True).close()
    assert path.exists()


def test_read_only_database_refuses_writes(tmp_path):
    path = tmp_path / "ro.db"
    Store(path).close()
    before = dump_db(path)
    os.chmod(path, 0o444)
    try:
        store = Store(path)
        assert store.read_only
        with pytest.raises(StoreError) as info:
            with store.write():
                pass
        assert str(info.value) == (
            f"database {path} is read-only: nothing was changed. Make the file writable or pass "
            "another path with --db"
        )
    finally:
        os.chmod(path, 0o644)
    assert dump_db(path) == before


def test_database_is_a_plain_sqlite_file(tmp_path):
    path = tmp_path / "plain.db"
    Store(path).close()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
