"""The store: every SQL statement taskengine runs, on SQLite (one plain file anyone can open with
``sqlite-utils`` or ``datasette``; the default) or PostgreSQL (several engines, one database)."""

from taskengine_core.store.db import Store, default_db_path, resolve_db_path, where
from taskengine_core.store.opening import is_postgres_target, open_store

__all__ = ["Store", "default_db_path", "is_postgres_target", "open_store", "resolve_db_path", "where"]
