"""A fast start for commands that read a little or write one row (``emit``, ``logs list``):
the migration check and the everyday queries need no sqlite-utils, which takes longer to import
than such a command takes to run. sqlite-utils is imported the first time anything else of it
is used."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

_MIGRATIONS_FILE = Path(__file__).with_name("migrations.py")
_NAMES: tuple[str, ...] | None = None


def migration_names() -> tuple[str, ...]:
    """The names of the migrations ``migrations.py`` defines, read from its text (importing it
    would import sqlite-utils); tests check them against sqlite-utils' own list."""
    global _NAMES
    if _NAMES is None:
        text = _MIGRATIONS_FILE.read_text(encoding="utf-8")
        _NAMES = tuple(re.findall(r"^@MIGRATIONS\(\)\s*\ndef (\w+)\(", text, re.M))
    return _NAMES


def migrations_current(conn: sqlite3.Connection) -> bool:
    """Whether every migration has been applied to this database (False when unsure: the
    caller then runs sqlite-utils' own check)."""
    names = migration_names()
    if not names:
        return False
    try:
        applied = {row[0] for row in conn.execute(
            "SELECT name FROM _sqlite_migrations WHERE migration_set = 'taskengine'")}
    except sqlite3.Error:  # no migrations table yet: a new database
        return False
    return applied.issuperset(names)


class LazyDatabase:
    """Stands in for ``sqlite_utils.Database(conn)``: ``conn``, ``execute`` and ``query`` work
    without sqlite-utils (``query`` yields a dict per row, as sqlite-utils' does); anything else
    makes the real ``Database`` and hands the call to it."""

    __slots__ = ("conn", "_real")
    dialect = "sqlite"

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self._real = None
        conn.execute("PRAGMA recursive_triggers=on")  # what sqlite_utils.Database() does at once

    def execute(self, sql: str, parameters=None) -> sqlite3.Cursor:
        if self._real is not None:
            return self._real.execute(sql, parameters)
        return self.conn.execute(sql) if parameters is None else self.conn.execute(sql, parameters)

    def query(self, sql: str, params=None):
        cursor = self.execute(sql, params or ())
        keys = [d[0] for d in cursor.description]
        for row in cursor:
            yield dict(zip(keys, row))

    def real(self):
        """The ``sqlite_utils.Database`` on the same connection."""
        if self._real is None:
            import sqlite_utils

            self._real = sqlite_utils.Database(self.conn)
        return self._real

    def __getattr__(self, name: str):
        return getattr(self.real(), name)

    def __getitem__(self, name: str):
        return self.real()[name]

    def __repr__(self) -> str:
        return f"<LazyDatabase {self.conn!r}>"
