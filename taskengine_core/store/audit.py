"""The audit log: who changed which configured object (or paused the engine), when, and how.
Rows are written inside the transaction that makes the change, so both happen or neither."""

from __future__ import annotations

import json
from typing import Iterable

from taskengine_core.store.sql import rows_as_dicts

COLUMNS = "id, time, actor, action, kind, name, changes, source"


def canonical(value) -> str:
    """The JSON text stored for a spec or a change: sorted keys, no spaces."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def record(conn, entries: Iterable[tuple[str, str, str, dict]], now: str, *, actor: str,
           source: str) -> None:
    """One row per ``(action, kind, name, changes)``; ``changes`` must already be redacted.
    ``entries`` may be a generator: rows are made as they are written."""
    conn.executemany(
        "INSERT INTO audit (time, actor, action, kind, name, changes, source) VALUES (?, ?, ?, ?, ?, ?, ?)",
        ((now, actor, action, kind, name, canonical(changes), source) for action, kind, name, changes in entries))


def entries(conn, limit: int = 100, *, kind: str | None = None, name: str | None = None) -> list[dict]:
    """The newest ``limit`` rows (of ``kind`` and ``name`` when given), newest first, with
    ``changes`` decoded."""
    clauses, params = [], []
    for column, value in (("kind", kind), ("name", name)):
        if value:
            clauses.append(f"{column} = ?")
            params.append(value)
    where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
    rows = rows_as_dicts(conn.execute(f"SELECT {COLUMNS} FROM audit{where} ORDER BY id DESC LIMIT ?",
                                      [*params, limit]))
    for row in rows:
        row["changes"] = json.loads(row["changes"])
    return rows
