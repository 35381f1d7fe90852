"""Running a test module on both backends, and reading its database the same way on each.

A module that does ``from tests.backends import db_path  # noqa: F401`` runs every test that uses
``db_path`` (directly or through ``applied``, ``engine_factory``, ``run_cli``) twice: on the
SQLite file, then on a fresh PostgreSQL database (``TASKENGINE_DB`` names it, so the CLI uses it
too). A test about SQLite itself (its file, WAL, PRAGMAs, locks) carries
``@sqlite_only("why")`` and is skipped on PostgreSQL with that reason.

The tests read and write rows with :func:`rows`, :func:`one` and :func:`execute`: plain SQL both
databases run (``?`` placeholders), through ``open_store(target).conn``."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

from taskengine_core.store import open_store

SQLITE_ONLY = "sqlite_only"


def sqlite_only(reason: str):
    """Mark a test as about SQLite itself: it runs on the SQLite file only."""
    return pytest.mark.sqlite_only(reason=reason)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_path(request, isolated_home, monkeypatch):
    """The test's database: the SQLite file (a ``Path``), then a ``postgresql://`` URL."""
    if request.param == "sqlite":
        return isolated_home / "taskengine.db"
    marker = request.node.get_closest_marker(SQLITE_ONLY)
    if marker is not None:
        pytest.skip(f"SQLite only: {marker.kwargs.get('reason') or marker.args[0]}")
    url = request.getfixturevalue("postgres_url")
    monkeypatch.setenv("TASKENGINE_DB", url)
    return url


def is_postgres(target) -> bool:
    return str(target).startswith("postgresql")


@contextmanager
def connection(target: str | Path) -> Iterator:
    """The ``conn`` of a store on ``target`` (an existing database), closed afterwards."""
    store = open_store(target, migrate=False, create=False)
    try:
        yield store.conn
    finally:
        store.close()


def rows(target: str | Path, sql: str, params=()) -> list[dict]:
    """Every row ``sql`` selects, as dicts keyed by column name."""
    with connection(target) as conn:
        cursor = conn.execute(sql, tuple(params))
        names = [c[0] for c in cursor.description]
        return [dict(zip(names, row)) for row in cursor.fetchall()]


def one(target: str | Path, sql: str, params=()) -> tuple | None:
    """The first row ``sql`` selects, as a tuple (None when there is none)."""
    with connection(target) as conn:
        row = conn.execute(sql, tuple(params)).fetchone()
        return None if row is None else tuple(row)


def execute(target: str | Path, sql: str, params=()) -> int:
    """Run one statement and commit it; returns the number of rows it changed."""
    with connection(target) as conn:
        return conn.execute(sql, tuple(params)).rowcount


def dump(target: str | Path) -> list[str]:
    """Every row of every table, as text: to compare a database before and after (what
    ``conftest.dump_db`` is for the SQLite file, on either backend)."""
    if not is_postgres(target):
        from tests.conftest import dump_db

        return dump_db(Path(target))
    out = []
    with connection(target) as conn:
        tables = [name for (name,) in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() "
            "AND table_type = 'BASE TABLE' ORDER BY table_name")]
        for name in tables:
            if name == "nodes":  # a running engine's heartbeat: liveness, not data a command changes
                continue
            for row in conn.execute(f'SELECT * FROM "{name}" ORDER BY 1'):
                out.append(f"{name}: {tuple(row)!r}")
    return out


def stored_bytes(target: str | Path) -> bytes:
    """Everything the database holds, to search for a secret: the SQLite file and its WAL as
    bytes; on PostgreSQL every row of every table as text."""
    if not is_postgres(target):
        path = Path(target)
        return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))
    return "\n".join(dump(target)).encode("utf-8", "backslashreplace")
