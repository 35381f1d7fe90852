"""Opening the SQLite database: where it lives, WAL, explicit write transactions, migrations."""

from __future__ import annotations

import os
import sqlite3
import threading
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Iterator

import sqlite_utils

from taskengine_core.errors import StoreError
from taskengine_core.store.checkpoint import AUTOCHECKPOINT_PAGES, checkpointed_here

DB_ENV = "TASKENGINE_DB"
HOME_ENV = "TASKENGINE_HOME"
DB_FILENAME = "taskengine.db"
BUSY_TIMEOUT_MS = 30000  # how long a write waits for another process's lock


def default_db_path() -> Path:
    """``$TASKENGINE_HOME/taskengine.db``, else the user data directory."""
    home = os.environ.get(HOME_ENV)
    if home:
        return Path(home) / DB_FILENAME
    import platformdirs

    return Path(platformdirs.user_data_dir("taskengine", appauthor=False)) / DB_FILENAME


def resolve_db_path(explicit: str | os.PathLike | None) -> tuple[Path, bool]:
    """The database path and whether the user named it (``--db`` or ``TASKENGINE_DB``)."""
    if explicit:
        return Path(explicit), True
    if os.environ.get(DB_ENV):
        return Path(os.environ[DB_ENV]), True
    return default_db_path(), False


_WRITE_LOCKS: dict[str, threading.RLock] = {}
_WRITE_LOCKS_GUARD = threading.Lock()


def _write_lock(real_path: str) -> threading.RLock:
    """One lock per database file in this process. Threads that write the same file (engine
    loop, ingress, webhook dispatcher) queue here and hand over at once, instead of meeting in
    SQLite's busy handler, which sleeps whole milliseconds between tries. Other processes are
    still kept apart by SQLite's own locking (and busy_timeout)."""
    with _WRITE_LOCKS_GUARD:
        return _WRITE_LOCKS.setdefault(real_path, threading.RLock())


def where(**equal) -> tuple[str, list]:
    """`` WHERE a = ? AND b = ?`` for the filters that are set (not None or empty), and their
    values; the empty string and no values when none is."""
    used = {column: value for column, value in equal.items() if value not in (None, "")}
    clause = " AND ".join(f"{column} = ?" for column in used)
    return (f" WHERE {clause}" if clause else ""), list(used.values())


class Store:
    """One connection to the database. Use one ``Store`` per thread."""

    def __init__(self, path: str | os.PathLike, *, create_dir: bool = False, migrate: bool = True):
        self.path = Path(path)
        parent = self.path.parent
        if not parent.exists():
            if create_dir:
                parent.mkdir(parents=True, exist_ok=True)
            else:
                raise StoreError(
                    f"database directory {parent} does not exist: create it, or pass another "
                    f"path with --db or {DB_ENV}"
                )
        # Honour the file's permission bits even for root, who could write it anyway.
        self.read_only = self.path.exists() and (
            not os.access(self.path, os.W_OK) or not self.path.stat().st_mode & 0o222
        )
        try:
            conn = sqlite3.connect(
                str(self.path), isolation_level=None, check_same_thread=False, timeout=30
            )
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            if not self.read_only:
                conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot open database {self.path}: {exc}") from None
        self.conn = conn
        self.db = sqlite_utils.Database(conn)
        self._lock = threading.RLock()
        self._real_path = os.path.realpath(self.path)
        self._file_lock = _write_lock(self._real_path)
        self._commits_checkpoint = True  # SQLite's default: a commit past 1,000 WAL pages checkpoints
        if migrate:
            self.migrate()

    def migrate(self) -> None:
        from taskengine_core.store.migrations import MIGRATIONS

        if self.read_only:
            pending = MIGRATIONS.pending(self.db)
            if pending:
                raise StoreError(self._read_only_message())
            return
        try:
            upgrade = bool(MIGRATIONS.pending(self.db)) and "_sqlite_migrations" in self.db.table_names()
            MIGRATIONS.apply(self.db)
        except sqlite3.OperationalError as exc:
            raise self._translate(exc) from None
        if upgrade:  # new indexes on tables that hold rows: give the planner statistics now
            self.optimize(analyze=True)

    @contextmanager
    def write(self) -> Iterator[sqlite_utils.Database]:
        """One explicit write transaction (``BEGIN IMMEDIATE``): all or nothing."""
        if self.read_only:
            raise StoreError(self._read_only_message())
        with self._lock, self._file_lock:
            self._follow_checkpointer()
            try:
                self.conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                raise self._translate(exc) from None
            try:
                yield self.db
            except BaseException:
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
                raise
            try:
                self.conn.execute("COMMIT")
            except sqlite3.OperationalError as exc:
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
                raise self._translate(exc) from None

    def _follow_checkpointer(self) -> None:
        """Leave checkpoints to a running :class:`~taskengine_core.store.checkpoint.Checkpointer`
        for this file, and take them back once it stops (checked at every write: a set lookup)."""
        wanted = not checkpointed_here(self._real_path)
        if wanted != self._commits_checkpoint:
            self.conn.execute(f"PRAGMA wal_autocheckpoint = {AUTOCHECKPOINT_PAGES if wanted else 0}")
            self._commits_checkpoint = wanted

    def query(self, sql: str, params=()) -> list[dict]:
        return list(self.db.query(sql, params))

    def optimize(self, *, analyze: bool = False, wait: bool = True) -> None:
        """Refresh the query planner's statistics where they are missing or stale for the tables
        this connection used (``PRAGMA optimize``; ``analyze``: every table), sampling at most
        about 400 rows per index. Statistics only speed queries up: a busy database (with
        ``wait=False``) or any error just skips them."""
        if self.read_only:
            return
        with self._lock, self._file_lock:
            try:
                if not wait:
                    self.conn.execute("PRAGMA busy_timeout = 0")
                self.conn.execute("PRAGMA analysis_limit = 400")
                self.conn.execute("ANALYZE" if analyze else "PRAGMA optimize")
            except sqlite3.Error:
                pass
            finally:
                if not wait:
                    with suppress(sqlite3.Error):
                        self.conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")

    def close(self) -> None:
        self.conn.close()

    def _read_only_message(self) -> str:
        return (
            f"database {self.path} is read-only: nothing was changed. Make the file writable "
            f"or pass another path with --db"
        )

    def _translate(self, exc: sqlite3.OperationalError) -> StoreError:
        text = str(exc)
        if "readonly" in text or "read-only" in text:
            return StoreError(self._read_only_message())
        return StoreError(f"database {self.path}: {text}")
