"""A psycopg 3 connection that takes the store's statements as they are written: ``?``
placeholders (turned into psycopg's ``%s`` once per statement text), integers for booleans, and
``dialect = "postgresql"`` for the few statements that differ."""

from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Any, Iterable, Iterator, Sequence

import psycopg
from psycopg.types.numeric import IntDumper

POSTGRESQL = "postgresql"
_COLUMN_TYPES: dict[str, dict[str, str]] = {}  # table -> column -> type (the schema is the same everywhere)


@lru_cache(maxsize=4096)
def translate(sql: str) -> str:
    """``?`` outside quotes and comments becomes ``%s``; a literal ``%`` becomes ``%%``."""
    out: list[str] = []
    i, n = 0, len(sql)
    while i < n:
        ch = sql[i]
        if ch in ("'", '"'):
            end = sql.find(ch, i + 1)
            while end != -1 and end + 1 < n and sql[end + 1] == ch:  # a doubled quote inside
                end = sql.find(ch, end + 2)
            end = n - 1 if end == -1 else end
            out.append(sql[i:end + 1].replace("%", "%%"))
            i = end + 1
            continue
        if ch == "-" and sql.startswith("--", i):
            end = sql.find("\n", i)
            end = n if end == -1 else end
            out.append(sql[i:end].replace("%", "%%"))
            i = end
            continue
        if ch == "?":
            out.append("%s")
        elif ch == "%":
            out.append("%%")
        else:
            out.append(ch)
        i += 1
    return "".join(out)


_INSERT_VALUES = re.compile(
    r"^\s*INSERT\s+INTO\s+(\w+)\s*\(([^)]*)\)\s*VALUES\s*\(\s*\?\s*(?:,\s*\?\s*)*\)(.*)$",
    re.IGNORECASE | re.DOTALL)
ROWS_PER_INSERT = 5000


@lru_cache(maxsize=512)
def multi_row_insert(sql: str) -> tuple[str, tuple[str, ...], str] | None:
    """``(table, columns, tail)`` of ``INSERT INTO t (...) VALUES (?, ...) [tail]`` when its
    rows can go in one statement: not with ``DO UPDATE`` (two rows of one statement may not
    update the same row) nor ``RETURNING``."""
    found = _INSERT_VALUES.match(sql)
    if found is None:
        return None
    tail = found.group(3)
    if re.search(r"\bDO\s+UPDATE\b|\bRETURNING\b", tail, re.IGNORECASE):
        return None
    columns = tuple(c.strip() for c in found.group(2).split(","))
    return found.group(1), columns, tail


_UPDATE_BY_KEY = re.compile(
    r"^\s*UPDATE\s+(\w+)\s+SET\s+((?:\w+\s*=\s*\?\s*,\s*)*\w+\s*=\s*\?)\s+"
    r"WHERE\s+((?:\w+\s*=\s*\?\s+AND\s+)*\w+\s*=\s*\?)\s*$", re.IGNORECASE | re.DOTALL)


@lru_cache(maxsize=512)
def keyed_update(sql: str) -> tuple[str, tuple[str, ...], tuple[str, ...]] | None:
    """``(table, set columns, key columns)`` of ``UPDATE t SET a = ?, ... WHERE k = ? [AND ...]``."""
    found = _UPDATE_BY_KEY.match(sql)
    if found is None:
        return None
    sets = tuple(part.split("=")[0].strip() for part in found.group(2).split(","))
    keys = tuple(part.split("=")[0].strip() for part in re.split(r"\s+AND\s+", found.group(3), flags=re.I))
    return found.group(1), sets, keys


def _json_rows(rows: list[Sequence]) -> str:
    """Rows as one JSON array of arrays (flags as 0/1, as the schema stores them)."""
    return json.dumps([[int(v) if v is True or v is False else v for v in row] for row in rows],
                      ensure_ascii=False, separators=(",", ":"))


class _BoolAsInt(IntDumper):
    """The schema stores flags as INTEGER 0/1 on both backends; Python's bools follow."""

    def dump(self, obj: Any) -> bytes:
        return b"1" if obj else b"0"

    def quote(self, obj: Any) -> bytes:
        return self.dump(obj)


def connect(url: str, *, application_name: str = "taskengine") -> psycopg.Connection:
    conn = psycopg.connect(url, autocommit=True, cursor_factory=psycopg.ClientCursor,
                           application_name=application_name, connect_timeout=10)
    conn.adapters.register_dumper(bool, _BoolAsInt)
    return conn


class PgConnection:
    """What store functions call ``conn``: ``execute``, ``executemany``, ``query``, ``dialect``.
    ``conn`` is itself, so ``db.conn.execute`` works as it does on a ``sqlite_utils.Database``."""

    dialect = POSTGRESQL

    def __init__(self, raw: psycopg.Connection) -> None:
        self.raw = raw

    @property
    def conn(self) -> "PgConnection":
        return self

    @property
    def in_transaction(self) -> bool:
        return self.raw.info.transaction_status != psycopg.pq.TransactionStatus.IDLE

    def execute(self, sql: str, params: Sequence | None = None) -> psycopg.Cursor:
        if not params:
            return self.raw.execute(translate(sql) if "?" in sql else sql)
        return self.raw.execute(translate(sql), tuple(params) if isinstance(params, list) else params)

    def executemany(self, sql: str, rows: Iterable[Sequence]) -> psycopg.Cursor:
        """Each row once, as SQLite's ``executemany`` does. A plain ``INSERT ... VALUES`` goes as
        one statement per :data:`ROWS_PER_INSERT` rows, the rows as one JSON parameter
        (``INSERT ... SELECT ... FROM json_array_elements(...)``): one round trip and a short
        statement rather than one per row (1,000 runs fired at one instant: several times
        faster), and one string to quote rather than a value each."""
        rows = list(rows)
        cursor = self.raw.cursor()
        parts = multi_row_insert(sql) if len(rows) > 1 else None
        if parts is None:
            update = keyed_update(sql) if len(rows) > 1 else None
            if update is not None and self._update_by_key(cursor, update, rows):
                return cursor
            cursor.executemany(translate(sql), rows)
            return cursor
        table, columns, tail = parts
        statement = (f"INSERT INTO {table} ({', '.join(columns)}) SELECT {self._fields(table, columns)} "
                     f"FROM json_array_elements(%s::json) AS e" + translate(tail))
        for start in range(0, len(rows), ROWS_PER_INSERT):
            cursor.execute(statement, (_json_rows(rows[start:start + ROWS_PER_INSERT]),))
        return cursor

    def _update_by_key(self, cursor, update, rows: list[Sequence]) -> bool:
        """``UPDATE t SET ... WHERE key = ?`` for many rows as one statement over arrays, when
        each row names a different key (else the caller updates row by row, in order)."""
        table, sets, keys = update
        if len({tuple(row[len(sets):]) for row in rows}) != len(rows):
            return False
        columns = sets + keys
        fields = ", ".join(f"{field} AS {c}" for field, c in zip(self._fields(table, columns).split(", "), columns))
        statement = (f"UPDATE {table} SET {', '.join(f'{c} = v.{c}' for c in sets)} "
                     f"FROM (SELECT {fields} FROM json_array_elements(%s::json) AS e) AS v "
                     f"WHERE {' AND '.join(f'{table}.{k} = v.{k}' for k in keys)}")
        for start in range(0, len(rows), ROWS_PER_INSERT):
            cursor.execute(statement, (_json_rows(rows[start:start + ROWS_PER_INSERT]),))
        return True

    def _fields(self, table: str, columns: tuple[str, ...]) -> str:
        """``(e->>0)::type, ...``: each column of a JSON row array, as its column's type."""
        types = self._column_types(table)
        return ", ".join(f"(e->>{i})::{types[c]}" for i, c in enumerate(columns))

    def _column_types(self, table: str) -> dict[str, str]:
        types = _COLUMN_TYPES.get(table)
        if types is None:
            types = _COLUMN_TYPES[table] = {name: kind for name, kind in self.raw.execute(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = current_schema() AND table_name = %s", (table,))}
        return types

    def query(self, sql: str, params: Sequence | None = None) -> Iterator[dict]:
        cursor = self.execute(sql, params)
        if cursor.description is None:
            return
        names = [c.name for c in cursor.description]
        for row in cursor:
            yield dict(zip(names, row))

    def close(self) -> None:
        self.raw.close()
