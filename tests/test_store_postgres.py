"""The PostgreSQL backend itself: opening by URL, migrations once (also when engines start
together), the same tables as SQLite, placeholders, clear errors, and passwords never shown."""

from __future__ import annotations

import threading

import pytest

from taskengine_core.errors import StoreError
from taskengine_core.store import open_store
from taskengine_core.store.postgres.connection import translate
from taskengine_core.store.target import parse_target, redact_url


def test_placeholders_become_psycopg_ones_outside_quotes():
    assert translate("SELECT ? WHERE a LIKE 'x%?' AND b = ?") == "SELECT %s WHERE a LIKE 'x%%?' AND b = %s"
    assert translate("SELECT 'it''s ?' , ? -- a ? comment\n") == "SELECT 'it''s ?' , %s -- a ? comment\n"
    assert translate('SELECT "odd?name" FROM t WHERE x = 5 % 2') == 'SELECT "odd?name" FROM t WHERE x = 5 %% 2'


def test_targets_name_the_backend_and_hide_passwords():
    assert parse_target("sqlite:////var/lib/te.db").path.as_posix() == "/var/lib/te.db"
    assert parse_target("sqlite:///te.db").path.as_posix() == "te.db"
    assert parse_target("/var/lib/te.db").kind == "sqlite"
    target = parse_target("postgresql://ops:s3cret@db.example:5432/te?password=other")
    assert target.kind == "postgresql"
    assert "s3cret" not in target.display and "other" not in target.display
    assert redact_url("postgresql://ops@db/te") == "postgresql://ops@db/te"
    with pytest.raises(StoreError, match="mysql.*not supported"):
        open_store("mysql://x@y/z")


def test_migrates_to_the_same_tables_as_sqlite(postgres_url, db_path):
    pg = open_store(postgres_url)
    lite = open_store(db_path)
    pg_tables = {r[0] for r in pg.conn.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()")}
    lite_tables = {r[0] for r in lite.conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")}
    assert lite_tables - {"_sqlite_migrations"} == pg_tables - {"taskengine_migrations"}
    for table in sorted(lite_tables - {"_sqlite_migrations"}):
        lite_columns = {r[1] for r in lite.conn.execute(f"PRAGMA table_info({table})")}
        pg_columns = {r[0] for r in pg.conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = ?", (table,))}
        assert lite_columns <= pg_columns, table
        assert pg_columns - lite_columns <= {"rowid"}, table


def test_engines_starting_together_migrate_once(postgres_url):
    errors, stores = [], []

    def start():
        try:
            stores.append(open_store(postgres_url))
        except Exception as exc:  # noqa: BLE001 - the assertion below shows it
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    names = [r[0] for r in stores[0].conn.execute("SELECT name FROM taskengine_migrations ORDER BY name")]
    assert names == sorted(set(names)) and "p001_schema" in names


def test_a_write_is_all_or_nothing(postgres_url):
    store = open_store(postgres_url)
    with pytest.raises(RuntimeError):
        with store.write() as db:
            db.execute("INSERT INTO meta (key, value) VALUES (?, ?)", ("k", "v"))
            raise RuntimeError("boom")
    assert store.conn.execute("SELECT count(*) FROM meta WHERE key = 'k'").fetchone()[0] == 0
    with store.write() as db:
        db.execute("INSERT INTO meta (key, value) VALUES (?, ?)", ("k", "v"))
    assert store.query("SELECT value FROM meta WHERE key = ?", ["k"]) == [{"value": "v"}]


def test_config_changes_are_logged_by_triggers(postgres_url):
    store = open_store(postgres_url)
    with store.write() as db:
        db.execute("INSERT INTO tasks (name, spec, created_at, updated_at, action) VALUES (?, ?, ?, ?, ?)",
                   ("t1", "{}", "x", "x", "command.run"))
        db.execute("UPDATE tasks SET name = ? WHERE name = ?", ("t2", "t1"))
        db.execute("DELETE FROM tasks WHERE name = ?", ("t2",))
    rows = store.conn.execute("SELECT kind, name FROM config_changes ORDER BY seq").fetchall()
    assert rows == [("task", "t1"), ("task", "t2"), ("task", "t1"), ("task", "t2")]


def test_an_unreachable_server_is_a_clear_error_without_the_password():
    with pytest.raises(StoreError) as caught:
        open_store("postgresql://ops:hunter2@127.0.0.1:1/te")
    message = str(caught.value)
    assert "cannot connect to PostgreSQL at postgresql://ops:***@127.0.0.1:1/te" in message
    assert "hunter2" not in message


def test_a_foreign_database_is_refused_untouched(postgres_url):
    import psycopg

    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE runs (x int)")
    with pytest.raises(StoreError, match="already has tables named runs.*nothing was changed"):
        open_store(postgres_url)
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")]
    assert tables == ["runs"]


def test_missing_schema_is_not_created_when_told_not_to(postgres_url):
    with pytest.raises(StoreError, match="no taskengine schema"):
        open_store(postgres_url, create=False)


def test_notify_wakes_every_listening_engine(postgres_url):
    from taskengine_core.store.postgres.wake import NotifyListener, notify, poke_url

    woken = [threading.Event(), threading.Event()]
    listeners = [NotifyListener(postgres_url, event.set) for event in woken]
    assert all(listener.start() for listener in listeners)
    try:
        store = open_store(postgres_url)
        with store.write() as db:  # sent at commit
            db.execute("INSERT INTO meta (key, value) VALUES ('x', 'y')")
            notify(db)
        assert all(event.wait(10) for event in woken)
        for event in woken:
            event.clear()
        assert poke_url(postgres_url) == 1  # from a process without a connection (the CLI)
        assert all(event.wait(10) for event in woken)
    finally:
        for listener in listeners:
            listener.stop()
    assert poke_url("postgresql://postgres@127.0.0.1:1/none") == 0


def test_many_rows_go_in_multi_row_inserts_with_the_same_result(postgres_url):
    from taskengine_core.store.postgres.connection import multi_row_insert

    assert multi_row_insert("INSERT INTO meta (key, value) VALUES (?, ?)") is not None
    assert multi_row_insert("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING") is not None
    assert multi_row_insert("INSERT INTO meta (key, value) VALUES (?, ?) "
                            "ON CONFLICT (key) DO UPDATE SET value = excluded.value") is None
    assert multi_row_insert("INSERT INTO meta (key, value) VALUES (?, ?) RETURNING key") is None
    store = open_store(postgres_url)
    rows = [(f"k{i:04d}", f"v{i}") for i in range(1234)] + [("k0001", "again")]
    with store.write() as db:
        db.executemany("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING", rows)
        db.executemany("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET "
                       "value = excluded.value", [("k0002", "x"), ("k0002", "y")])  # row by row, in order
    values = dict(store.conn.execute("SELECT key, value FROM meta WHERE key LIKE 'k%'").fetchall())
    assert len(values) == 1234 and values["k0001"] == "v1" and values["k0002"] == "y"
    with pytest.raises(Exception):
        with store.write() as db:  # all or nothing across the chunks
            db.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", [(f"n{i}", "v") for i in range(900)]
                           + [("n1", "dup")])
    assert store.conn.execute("SELECT count(*) FROM meta WHERE key LIKE 'n%'").fetchone()[0] == 0


def test_many_keyed_updates_go_as_one_statement_with_the_same_result(postgres_url):
    from taskengine_core.store.postgres.connection import keyed_update

    assert keyed_update("UPDATE schedule_state SET next_fire = ?, last_slot = ? WHERE schedule = ?") == (
        "schedule_state", ("next_fire", "last_slot"), ("schedule",))
    assert keyed_update("UPDATE runs SET attempt = attempt + 1 WHERE id = ?") is None
    assert keyed_update("UPDATE runs SET status = ? WHERE id = ? AND status = 'running'") is None
    store = open_store(postgres_url)
    with store.write() as db:
        db.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", [(f"u{i}", "old") for i in range(300)])
        db.executemany("UPDATE meta SET value = ? WHERE key = ?", [(f"new{i}", f"u{i}") for i in range(0, 300, 2)])
        db.executemany("UPDATE meta SET value = ? WHERE key = ?", [("a", "u1"), ("b", "u1")])  # in order
    values = dict(store.conn.execute("SELECT key, value FROM meta WHERE key LIKE 'u%'").fetchall())
    assert values["u0"] == "new0" and values["u298"] == "new298" and values["u3"] == "old"
    assert values["u1"] == "b"
