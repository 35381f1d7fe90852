"""What the store's statements share across its two backends, SQLite and PostgreSQL.

Every function under ``taskengine_core/store/`` takes a connection ``conn`` first: an object with
``execute(sql, params)``, ``executemany(sql, rows)`` and ``dialect`` (``"sqlite"`` or
``"postgresql"``). Statements use ``?`` placeholders on both (the PostgreSQL connection turns them
into psycopg's). Most SQL is written once, in the part both databases speak (``ON CONFLICT``,
``RETURNING``, ``coalesce``, row values); where they differ, a function here gives each its form.
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import contextmanager
from typing import Iterable, Iterator, Sequence

SQLITE = "sqlite"
POSTGRESQL = "postgresql"


class SqliteConnection(sqlite3.Connection):
    """``sqlite3.Connection`` that says which dialect it speaks (``sqlite3.connect(factory=...)``)."""

    dialect = SQLITE


def dialect(conn) -> str:
    return getattr(conn, "dialect", SQLITE)


def is_postgres(conn) -> bool:
    return dialect(conn) == POSTGRESQL


def in_values(conn, column: str, values: Sequence, *, cast: str = "text") -> tuple[str, list]:
    """``column IN (the values)`` as one parameter, however many values there are: SQLite reads
    them from a JSON array, PostgreSQL from an array (``cast``: the array's element type)."""
    if is_postgres(conn):
        return f"{column} = ANY(?::{cast}[])", [list(values)]
    return f"{column} IN (SELECT value FROM json_each(?))", [json.dumps(list(values))]


def indexed_by(conn, index: str) -> str:
    """`` INDEXED BY index`` on SQLite (where its planner needs telling); nothing on PostgreSQL."""
    return "" if is_postgres(conn) else f" INDEXED BY {index}"


def json_text(conn, column: str, key: str) -> str:
    """The text of the top-level ``key`` of the JSON object in ``column``."""
    if is_postgres(conn):
        return f"(({column})::jsonb ->> '{key}')"
    return f"json_extract({column}, '$.{key}')"


def rows_as_dicts(cursor) -> list[dict]:
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row)) for row in cursor]


def changed(cursor) -> int:
    """How many rows the statement changed (``rowcount`` on both)."""
    return cursor.rowcount


def placeholders(count: int) -> str:
    return ", ".join("?" * count)


def chunks(values: Iterable, size: int) -> Iterable[list]:
    batch: list = []
    for value in values:
        batch.append(value)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


@contextmanager
def savepoint(conn, name: str) -> Iterator[None]:
    """Part of the caller's transaction that is undone alone when the block raises (the rest
    of the transaction stays usable, on PostgreSQL too, where a failed statement would
    otherwise abort it all)."""
    conn.execute(f"SAVEPOINT {name}")
    try:
        yield
    except BaseException:
        try:
            conn.execute(f"ROLLBACK TO SAVEPOINT {name}")
            conn.execute(f"RELEASE SAVEPOINT {name}")
        except Exception:  # noqa: BLE001, S110 - e.g. the connection is gone: the whole transaction
            pass  # fails anyway; the caller must see the first error (is it transient?), not this one
        raise
    conn.execute(f"RELEASE SAVEPOINT {name}")
