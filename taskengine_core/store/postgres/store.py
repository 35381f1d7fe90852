"""The PostgreSQL store: what :class:`~taskengine_core.store.db.Store` is for SQLite, on a
server that several engines share. One connection per ``PostgresStore``; use one per thread."""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator

import psycopg

from taskengine_core.clock import to_iso
from taskengine_core.errors import StoreBusy, StoreError
from taskengine_core.store.postgres.connection import PgConnection, connect
from taskengine_core.store.postgres.schema import MIGRATIONS
from taskengine_core.store.target import DatabaseTarget, parse_target

MIGRATION_LOCK = 7262000  # advisory lock key: one engine at a time migrates
LOCK_TIMEOUT_MS = 30000  # how long a write waits for a row another engine holds


class PostgresStore:
    dialect = "postgresql"
    read_only = False
    identity = None  # a server has no file to be deleted under us

    def __init__(self, target: str | DatabaseTarget, *, migrate: bool = True, create: bool = True,
                 **_ignored) -> None:
        self.target = parse_target(target)
        self.url = self.target.url or ""
        self.path = self.target.display  # what messages name; never the password
        try:
            raw = connect(self.url)
        except psycopg.Error as exc:
            raise StoreError(f"cannot connect to PostgreSQL at {self.path}: {_first_line(exc)}. "
                             f"Check the server is running and the URL (user, host, port, database) "
                             f"passed with --db or TASKENGINE_DB") from None
        self.conn = PgConnection(raw)
        self.db = self.conn
        self._lock = threading.RLock()
        self._waits = True
        self.conn.execute(f"SET lock_timeout = {LOCK_TIMEOUT_MS}")
        if migrate:
            self.migrate(create=create)

    # -- schema ------------------------------------------------------------------------------

    def migrate(self, *, create: bool = True) -> None:
        if self._applied() >= {name for name, _ in MIGRATIONS}:
            return
        with self.write() as db:
            db.execute("SELECT pg_advisory_xact_lock(?)", (MIGRATION_LOCK,))
            db.execute("CREATE TABLE IF NOT EXISTS taskengine_migrations "
                       "(name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
            done = {row[0] for row in db.execute("SELECT name FROM taskengine_migrations")}
            if not done and not create:
                raise StoreError(f"no taskengine schema in {self.path}: run 'taskengine apply RULES' "
                                 f"(or 'taskengine run') first to create it")
            if not done:
                self._refuse_foreign(db)
            now = to_iso(_utcnow())
            for name, script in MIGRATIONS:
                if name not in done:
                    db.raw.execute(script)
                    db.execute("INSERT INTO taskengine_migrations (name, applied_at) VALUES (?, ?)", (name, now))

    def _applied(self) -> set[str]:
        try:
            return {row[0] for row in self.conn.execute("SELECT name FROM taskengine_migrations")}
        except psycopg.errors.UndefinedTable:
            return set()

    def _refuse_foreign(self, db: PgConnection) -> None:
        """A database without taskengine's schema must hold none of the tables it would create:
        never mix taskengine's tables into another application's."""
        ours = ("runs", "events", "tasks", "schedules", "webhooks", "settings", "meta")
        found = [row[0] for row in db.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() "
            "AND table_name = ANY(?::text[])", (list(ours),))]
        if found:
            raise StoreError(f"{self.path} already has tables named {', '.join(sorted(found))} but no "
                             f"taskengine schema: nothing was changed. Give taskengine a database "
                             f"(or schema) of its own")

    # -- transactions ------------------------------------------------------------------------

    @contextmanager
    def write(self) -> Iterator[PgConnection]:
        """One transaction: all or nothing. Rows other engines lock are waited for (up to
        ``LOCK_TIMEOUT_MS``), or refused at once with :class:`StoreBusy` when ``waits`` is off."""
        with self._lock:
            try:
                with self.conn.raw.transaction():
                    yield self.conn
            except psycopg.errors.LockNotAvailable as exc:
                raise StoreBusy(f"database {self.path}: {_first_line(exc)}") from None
            except psycopg.OperationalError as exc:
                raise StoreError(f"database {self.path}: {_first_line(exc)}") from None

    def query(self, sql: str, params=()) -> list[dict]:
        return list(self.conn.query(sql, params))

    @property
    def waits(self) -> bool:
        return self._waits

    @waits.setter
    def waits(self, value: bool) -> None:
        self._waits = value
        self.conn.execute(f"SET lock_timeout = {LOCK_TIMEOUT_MS if value else 1}")

    def check_file(self) -> None:
        """Nothing to check: a server's database is not a file that can be replaced under us
        (a lost connection raises on the next statement instead)."""

    def optimize(self, *, analyze: bool = False, wait: bool = True) -> None:
        """Autovacuum keeps PostgreSQL's statistics; ``analyze`` refreshes them now."""
        if analyze:
            try:
                self.conn.execute("ANALYZE")
            except psycopg.Error:
                pass

    def close(self) -> None:
        self.conn.close()


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _utcnow():
    from datetime import datetime, timezone

    return datetime.now(timezone.utc)
