"""The SQLite store: one plain file anyone can open with ``sqlite-utils`` or ``datasette``."""

from taskengine_core.store.db import Store, default_db_path, resolve_db_path, where

__all__ = ["Store", "default_db_path", "resolve_db_path", "where"]
