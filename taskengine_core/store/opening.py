"""Opening the database a target names: the SQLite file (the default) or a PostgreSQL server."""

from __future__ import annotations

import os

from taskengine_core.errors import StoreError
from taskengine_core.store.target import DatabaseTarget, is_postgres_url, parse_target


def open_store(target: str | os.PathLike | DatabaseTarget, **options):
    """A ``Store`` (SQLite) or ``PostgresStore`` with the same interface. ``options`` are
    ``Store``'s (``create``, ``migrate``, ``create_dir``, ``identity``); the PostgreSQL store
    takes ``create`` and ``migrate`` and ignores what only concerns a file."""
    try:
        parsed = parse_target(target)
    except ValueError as exc:
        raise StoreError(str(exc)) from None
    if parsed.kind == "postgresql":
        from taskengine_core.store.postgres import require_psycopg

        require_psycopg()
        from taskengine_core.store.postgres.store import PostgresStore

        return PostgresStore(parsed, **options)
    from taskengine_core.store.db import Store

    return Store(parsed.path, **options)


def is_postgres_target(target) -> bool:
    return is_postgres_url(str(target)) if not isinstance(target, DatabaseTarget) else target.kind == "postgresql"
