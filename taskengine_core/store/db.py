"""Opening the SQLite database: where it lives, WAL, explicit write transactions, migrations."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Iterator

from taskengine_core.errors import DatabaseFileError, StoreBusy, StoreError
from taskengine_core.store.checkpoint import AUTOCHECKPOINT_PAGES, checkpointed_here
from taskengine_core.store.quick import LazyDatabase, migrations_current
from taskengine_core.store.sql import SqliteConnection

DB_ENV = "TASKENGINE_DB"
HOME_ENV = "TASKENGINE_HOME"
DB_FILENAME = "taskengine.db"
BUSY_TIMEOUT_MS = 30000  # how long a write waits for another process's lock
# FULL: every commit syncs the WAL, so what was acknowledged (a 202, the id ``emit`` prints, a
# claimed slot) survives a power loss or an OS crash too, not only a killed process. Group
# commit spreads that sync over a batch; benchmarks/README.md has the cost against NORMAL.
# TASKENGINE_SYNCHRONOUS=NORMAL trades that for throughput (a killed process still loses nothing).
SYNCHRONOUS = "FULL"
SYNCHRONOUS_ENV = "TASKENGINE_SYNCHRONOUS"
LOCAL_WAIT = 0.05  # seconds a store that does not wait queues behind this process's writers
# While another process holds the write lock, try again after this long (seconds), doubling up
# to the second: a gap of a millisecond between another process's writes is found
LOCK_TRIES = (0.0001, 0.001)


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


def _synchronous() -> str:
    value = os.environ.get(SYNCHRONOUS_ENV, "").strip().upper() or SYNCHRONOUS
    if value not in ("FULL", "NORMAL", "EXTRA"):
        raise StoreError(f"{SYNCHRONOUS_ENV}={value[:20]!r}: expected FULL (the default: every commit "
                         "survives a power loss) or NORMAL (faster; a power loss may lose the last commits)")
    return value


def _identity(path: Path) -> tuple[int, int] | None:
    """(device, inode) of the file at ``path``, None when there is none."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


def where(**equal) -> tuple[str, list]:
    """`` WHERE a = ? AND b = ?`` for the filters that are set (not None or empty), and their
    values; the empty string and no values when none is."""
    used = {column: value for column, value in equal.items() if value not in (None, "")}
    clause = " AND ".join(f"{column} = ?" for column in used)
    return (f" WHERE {clause}" if clause else ""), list(used.values())


class Store:
    """One connection to the database. Use one ``Store`` per thread."""

    def __init__(self, path: str | os.PathLike, *, create_dir: bool = False, migrate: bool = True,
                 create: bool = True, identity: tuple[int, int] | None = None):
        """``create``: make a new database when there is none at ``path`` (else
        :class:`StoreError`). ``identity``: the (device, inode) the file must still have, as
        another ``Store`` of the same process saw it; a file deleted or replaced since is refused."""
        self.path = Path(path)
        if not create and not self.path.exists():
            if identity is not None:
                raise DatabaseFileError(self._file_message("deleted"))
            raise StoreError(
                f"no database at {self.path}: run 'taskengine apply RULES' (or 'taskengine run') "
                f"first to create it, or pass the right path with --db or {DB_ENV}")
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
        synchronous = _synchronous()
        try:
            conn = sqlite3.connect(
                str(self.path), isolation_level=None, check_same_thread=False, timeout=30,
                factory=SqliteConnection,
            )
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            if migrate:
                self._refuse_foreign(conn)
            if not self.read_only:
                conn.execute("PRAGMA journal_mode = WAL")
            conn.execute(f"PRAGMA synchronous = {synchronous}")
            conn.execute("PRAGMA foreign_keys = ON")
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot open database {self.path}: {exc}") from None
        self.conn = conn
        self.identity = _identity(self.path)
        if identity is not None and self.identity != identity:
            conn.close()
            raise DatabaseFileError(self._file_message("replaced" if self.identity else "deleted"))
        self.db = LazyDatabase(conn)  # sqlite-utils is imported when first needed (fast CLI start)
        self._lock = threading.RLock()
        self._real_path = os.path.realpath(self.path)
        self._file_lock = _write_lock(self._real_path)
        self._commits_checkpoint = True  # SQLite's default: a commit past 1,000 WAL pages checkpoints
        self._waits = True
        if migrate:
            self.migrate()

    def migrate(self) -> None:
        if migrations_current(self.conn):
            return  # nothing to apply, and sqlite-utils not even imported (fast CLI start)
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

    def _refuse_foreign(self, conn: sqlite3.Connection) -> None:
        """A database without taskengine's schema must be empty: never migrate (or switch to
        WAL) another application's file. Checked before anything is written to it."""
        names = {row[0] for row in conn.execute(
            "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') AND name NOT LIKE 'sqlite_%'")}
        if "_sqlite_migrations" in names and conn.execute(
                "SELECT 1 FROM _sqlite_migrations WHERE migration_set = 'taskengine' LIMIT 1").fetchone():
            return
        tables = sorted(names - {"_sqlite_migrations"})
        if tables:
            conn.close()
            shown = ", ".join(tables[:5]) + (f" and {len(tables) - 5} more" if len(tables) > 5 else "")
            raise StoreError(
                f"{self.path} is an SQLite database but not taskengine's (no taskengine schema; it has "
                f"the tables {shown}): nothing was changed. Pass taskengine's database, or a new path, "
                f"with --db or {DB_ENV}")

    def check_file(self) -> None:
        """Raise :class:`DatabaseFileError` when the file at ``path`` is no longer the one this
        connection writes to: deleted (the connection would write to an unlinked inode, lost at
        close) or replaced (a new file moved over it). One ``stat``."""
        now = _identity(self.path)
        if now != self.identity:
            raise DatabaseFileError(self._file_message("replaced" if now else "deleted"))

    def _file_message(self, what: str) -> str:
        return (f"database file {self.path} was {what} while taskengine was using it: events and "
                f"runs can no longer be stored safely, so nothing is accepted. Restore the file "
                f"(from a backup) and restart the engine, or restart it to start with a new database")

    @property
    def waits(self) -> bool:
        """Whether a write waits for a lock held by another thread or process (up to
        :data:`BUSY_TIMEOUT_MS`); when not, it raises :class:`StoreBusy` at once."""
        return self._waits

    @waits.setter
    def waits(self, value: bool) -> None:
        self._waits = value
        self.conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS if value else 0}")

    @contextmanager
    def write(self) -> Iterator[sqlite_utils.Database]:
        """One explicit write transaction (``BEGIN IMMEDIATE``): all or nothing."""
        if self.read_only:
            raise StoreError(self._read_only_message())
        with self._lock, self._locked_file():
            self.check_file()
            self._follow_checkpointer()
            try:
                self._begin_immediate()
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

    def _begin_immediate(self) -> None:
        """``BEGIN IMMEDIATE``, waiting for another process's write lock as long as the
        connection's ``busy_timeout`` says. SQLite's own busy handler sleeps 1, 2, 5, 10, 15,
        20, 25, ... 100 ms between tries, so a process that writes often (an engine, its
        dispatcher processes) took the lock long after it was free, or missed it to the other's
        next write again and again; here the tries come every 0.1 to 1 ms
        (benchmarks/bench_lock_handoff.py)."""
        conn = self.conn
        wait_ms = conn.execute("PRAGMA busy_timeout").fetchone()[0]
        if not wait_ms:
            conn.execute("BEGIN IMMEDIATE")
            return
        conn.execute("PRAGMA busy_timeout = 0")
        try:
            started, pause = None, LOCK_TRIES[0]
            while True:
                try:
                    conn.execute("BEGIN IMMEDIATE")
                    return
                except sqlite3.OperationalError as exc:
                    if getattr(exc, "sqlite_errorcode", 0) & 0xFF != sqlite3.SQLITE_BUSY:
                        raise  # not another writer's lock (BUSY_RECOVERY and the like are)
                    now = time.monotonic()
                    started = started or now
                    if now - started >= wait_ms / 1000:
                        raise
                time.sleep(pause)
                pause = min(pause * 2, LOCK_TRIES[1])
        finally:
            conn.execute(f"PRAGMA busy_timeout = {wait_ms}")

    @contextmanager
    def _locked_file(self) -> Iterator[None]:
        # A store that does not wait still queues briefly behind this process's other writers:
        # their transactions are short, and handing a commit to another thread costs more.
        if not self._file_lock.acquire(timeout=-1 if self._waits else LOCAL_WAIT):
            raise StoreBusy(f"database {self.path} is being written by another thread")
        try:
            yield
        finally:
            self._file_lock.release()

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
        if not self._waits and "locked" in text:
            return StoreBusy(f"database {self.path}: {text}")
        return StoreError(f"database {self.path}: {text}")
