"""The PostgreSQL backend (the ``[postgres]`` extra: psycopg 3): several engines, one database."""

from __future__ import annotations


def require_psycopg() -> None:
    """Raise a clear error when the extra is not installed."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        from taskengine_core.errors import StoreError

        raise StoreError("a postgresql:// database needs psycopg 3: pip install 'taskengine-core[postgres]'") from None
