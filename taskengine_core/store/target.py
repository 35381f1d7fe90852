"""Which database a ``--db`` value (or ``TASKENGINE_DB``) names: an SQLite file (a path or
``sqlite:///PATH``, the embedded default) or a PostgreSQL server (``postgresql://...``)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

SQLITE_PREFIX = "sqlite:///"
POSTGRES_SCHEMES = ("postgresql://", "postgres://")


@dataclass(frozen=True)
class DatabaseTarget:
    kind: str  # "sqlite" or "postgresql"
    path: Path | None = None  # SQLite
    url: str | None = None  # PostgreSQL, with its password (never shown)

    @property
    def display(self) -> str:
        """How messages name the database: the path, or the URL without its password."""
        return str(self.path) if self.kind == "sqlite" else redact_url(self.url or "")

    def __str__(self) -> str:
        return self.display


def is_postgres_url(text: str | None) -> bool:
    return bool(text) and str(text).startswith(POSTGRES_SCHEMES)


def parse_target(text) -> DatabaseTarget:
    """A path (``str`` or ``Path``), ``sqlite:///PATH`` or ``postgresql://USER@HOST/DB``."""
    if isinstance(text, DatabaseTarget):
        return text
    value = str(text)
    if is_postgres_url(value):
        return DatabaseTarget("postgresql", url=value)
    if value.startswith(SQLITE_PREFIX):
        # as SQLAlchemy reads it: sqlite:///relative.db, sqlite:////absolute/path.db
        return DatabaseTarget("sqlite", path=Path(value[len(SQLITE_PREFIX):]))
    if re.match(r"^[a-z][a-z0-9+.-]*://", value):
        scheme = value.split("://", 1)[0]
        raise ValueError(f"database URL scheme {scheme!r} is not supported: pass a file path, "
                         f"sqlite:///PATH or postgresql://USER@HOST:PORT/DATABASE")
    return DatabaseTarget("sqlite", path=Path(value))


def redact_url(url: str) -> str:
    """``postgresql://user:***@host/db``: the password (and a ``password=`` query value) hidden."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "postgresql://(unparsable URL)"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        if ":" in userinfo:
            userinfo = userinfo.split(":", 1)[0] + ":***"
        netloc = f"{userinfo}@{host}"
    query = re.sub(r"(?i)(password=)[^&]*", r"\1***", parts.query)
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))
