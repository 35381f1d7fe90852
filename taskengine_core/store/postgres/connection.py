"""A psycopg 3 connection that takes the store's statements as they are written: ``?``
placeholders (turned into psycopg's ``%s`` once per statement text), integers for booleans, and
``dialect = "postgresql"`` for the few statements that differ."""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Iterable, Iterator, Sequence

import psycopg
from psycopg.types.numeric import IntDumper

POSTGRESQL = "postgresql"


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
        cursor = self.raw.cursor()
        cursor.executemany(translate(sql), list(rows))
        return cursor

    def query(self, sql: str, params: Sequence | None = None) -> Iterator[dict]:
        cursor = self.execute(sql, params)
        if cursor.description is None:
            return
        names = [c.name for c in cursor.description]
        for row in cursor:
            yield dict(zip(names, row))

    def close(self) -> None:
        self.raw.close()
