"""The configuration as stored: tasks, schedules, event rules, webhooks, settings, the links
between them, the configuration generation and the ``config_changes`` log.

``apply`` writes these rows (one transaction, with its audit rows); the engine reads them into
its runtime. The change log is filled by triggers on both backends; readers follow it by ``seq``.
Every statement here runs on SQLite and PostgreSQL (see :mod:`taskengine_core.store.sql`).
"""

from __future__ import annotations

from contextlib import contextmanager, nullcontext
from typing import Iterable, Iterator, Sequence

from taskengine_core.store.sql import in_values, is_postgres, json_text, rows_as_dicts

TABLE_OF_KIND = {"task": "tasks", "schedule": "schedules", "event": "event_rules", "webhook": "webhooks"}
# link table -> (the task column, the other object's column); which kind the other column names
LINKS = {
    "task_schedules": ("task", "schedule"),
    "task_events": ("task", "event_rule"),
    "task_webhooks": ("task", "webhook"),
}
LINK_OF_KIND = {"schedule": "task_schedules", "event": "task_events", "webhook": "task_webhooks"}
OBJECT_COLUMNS = "name, spec, enabled, description, file, created_at, updated_at"
# PostgreSQL: the transaction-scoped advisory lock every configuration writer holds (the
# config_changes trigger of store/postgres/schema.py takes the same key)
CONFIG_LOCK = 7262001


def _table(kind: str) -> str:
    try:
        return TABLE_OF_KIND[kind]
    except KeyError:
        raise ValueError(f"unknown kind of configured object {kind!r}") from None


# -- one consistent read ------------------------------------------------------------------------


@contextmanager
def snapshot(store) -> Iterator[object]:
    """A read transaction on ``store.conn``: every read inside sees the same committed state (a
    concurrent ``apply`` is seen whole or not at all). Yields the connection."""
    conn = store.conn
    with getattr(store, "_lock", None) or nullcontext():
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY" if is_postgres(conn) else "BEGIN")
        try:
            yield conn
        finally:
            conn.execute("COMMIT")


def lock_for_change(conn) -> None:
    """First thing in a transaction that changes the configuration: wait for any other writer
    of it to finish, so that what this one reads (``apply``'s diff) is still true when it
    writes. SQLite's write transaction already holds the whole database; on PostgreSQL several
    engines and CLIs write at once, so they queue on one advisory lock."""
    if is_postgres(conn):
        conn.execute("SELECT pg_advisory_xact_lock(?)", (CONFIG_LOCK,))


# -- generation and change log ------------------------------------------------------------------


def generation(conn) -> int:
    """The configuration generation: bumped by every change, so an engine sees it in one read."""
    row = conn.execute("SELECT value FROM meta WHERE key = 'config_generation'").fetchone()
    return int(row[0]) if row else 0


def generation_to_act_on(conn) -> int:
    """The configuration generation, read inside a write transaction that acts on what it says
    (a run queued by hand, checked against that configuration). On PostgreSQL a change under way
    (:func:`lock_for_change`) is waited for first, and the next one waits until this transaction
    ends; SQLite's write transaction already holds the whole database."""
    if is_postgres(conn):
        conn.execute("SELECT pg_advisory_xact_lock_shared(?)", (CONFIG_LOCK,))
    return generation(conn)


def bump_generation(conn) -> None:
    """Tell running engines the configuration changed (inside the changing transaction)."""
    conn.execute("UPDATE meta SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT) "
                 "WHERE key = 'config_generation'")


def last_change(conn) -> int:
    """The ``seq`` of the newest ``config_changes`` row (0 when there is none)."""
    return conn.execute("SELECT max(seq) FROM config_changes").fetchone()[0] or 0


def changes_since(conn, seq: int, limit: int) -> tuple[set[tuple[str, str]] | None, int]:
    """The ``(kind, name)`` pairs logged after ``seq`` (at most ``limit`` of them) and the last
    seq; ``None`` when the log was pruned past ``seq`` (the reader must reload everything)."""
    pruned = conn.execute("SELECT value FROM meta WHERE key = 'config_changes_pruned_through'").fetchone()
    if pruned is None or seq < int(pruned[0]):
        return None, 0
    last = last_change(conn)
    # bounded on both sides: PostgreSQL then scans the key's index even without statistics (a
    # log just filled by a large apply) or with a generic plan; unbounded it read the whole log
    rows = conn.execute("SELECT DISTINCT kind, name FROM config_changes WHERE seq > ? AND seq <= ? LIMIT ?",
                        (seq, last, limit)).fetchall()
    return {(kind, name) for kind, name in rows}, last


def prune_changes(conn, keep: int, batch: int) -> bool:
    """Delete up to ``batch`` of the change log's oldest rows, leaving the newest ``keep``
    (inside the caller's write transaction); returns whether more remain."""
    last = last_change(conn)
    first = conn.execute("SELECT min(seq) FROM config_changes").fetchone()[0] or 0
    if first > last - keep:
        return False
    through = min(last - keep, first + batch - 1)
    conn.execute("DELETE FROM config_changes WHERE seq <= ?", (through,))
    conn.execute("UPDATE meta SET value = ? WHERE key = 'config_changes_pruned_through' "
                 "AND CAST(value AS INTEGER) < ?", (str(through), through))
    return through < last - keep


# -- reading objects ----------------------------------------------------------------------------


def task_rows(conn, names: Sequence[str] | None = None) -> list[dict]:
    """Rows of ``tasks`` (all, or those named), in no particular order."""
    return _object_rows(conn, "tasks", names, extra=", action, retired_at")


def rule_rows(conn, names: Sequence[str] | None = None) -> list[dict]:
    """Rows of ``event_rules`` (all, or those named), in no particular order."""
    return _object_rows(conn, "event_rules", names)


def object_rows(conn, kind: str) -> list[dict]:
    """Every object of ``kind`` (``task``, ``schedule``, ``event``, ``webhook``), by name."""
    return _object_rows(conn, _table(kind), None, extra=", action, retired_at" if kind == "task" else "",
                        order=" ORDER BY name")


def _object_rows(conn, table: str, names: Sequence[str] | None, extra: str = "", order: str = "") -> list[dict]:
    sql, params = f"SELECT {OBJECT_COLUMNS}{extra} FROM {table}", []
    if names is not None:
        clause, params = in_values(conn, "name", names)
        sql += f" WHERE {clause}"
    return rows_as_dicts(conn.execute(sql + order, params))


def object_specs(conn, kind: str) -> dict[str, str]:
    """``{name: spec text}`` of every object of ``kind`` (what ``apply`` diffs against)."""
    return dict(conn.execute(f"SELECT name, spec FROM {_table(kind)}").fetchall())


def object_specs_and_files(conn, kind: str) -> list[tuple[str, str, str | None]]:
    """``(name, spec text, file)`` of every object of ``kind``."""
    return [tuple(row) for row in conn.execute(f"SELECT name, spec, file FROM {_table(kind)}").fetchall()]


def objects_in_files(conn, kind: str, files: Sequence[str]) -> list[tuple[str, str, str | None]]:
    """``(name, spec text, file)`` of the objects of ``kind`` stored from one of ``files``."""
    clause, params = in_values(conn, "file", files)
    return [tuple(row) for row in conn.execute(f"SELECT name, spec, file FROM {_table(kind)} WHERE {clause}",
                                                params).fetchall()]


def objects_named(conn, kind: str, names: Sequence[str]) -> list[tuple[str, str, str | None]]:
    """``(name, spec text, file)`` of those of the named objects of ``kind`` that exist (looked
    up by their key: no scan of the table)."""
    if not names:
        return []
    clause, params = in_values(conn, "name", names)
    return [tuple(row) for row in conn.execute(f"SELECT name, spec, file FROM {_table(kind)} WHERE {clause}",
                                                params).fetchall()]


def object_counts_by_file(conn, kind: str) -> dict[str | None, int]:
    """``{file: number of objects of kind stored from it}``."""
    return dict(conn.execute(f"SELECT file, count(*) FROM {_table(kind)} GROUP BY file").fetchall())


def object_files(conn, kind: str, names: Sequence[str]) -> dict[str, str | None]:
    """``{name: file}`` of those of the named objects of ``kind`` that exist."""
    if not names:
        return {}
    clause, params = in_values(conn, "name", names)
    return dict(conn.execute(f"SELECT name, file FROM {_table(kind)} WHERE {clause}", params).fetchall())


def object_specs_named(conn, kind: str, names: Sequence[str]) -> dict[str, str]:
    """``{name: spec text}`` of those of the named objects of ``kind`` that exist."""
    if not names:
        return {}
    clause, params = in_values(conn, "name", names)
    return dict(conn.execute(f"SELECT name, spec FROM {_table(kind)} WHERE {clause}", params).fetchall())


def settings_and_files(conn) -> list[tuple[str, str, str | None]]:
    """``(name, spec text, file)`` of every setting."""
    return [tuple(row) for row in conn.execute("SELECT name, spec, file FROM settings").fetchall()]


def object_spec(conn, kind: str, name: str) -> str | None:
    row = conn.execute(f"SELECT spec FROM {_table(kind)} WHERE name = ?", (name,)).fetchone()
    return row[0] if row else None


def object_exists(conn, kind: str, name: str) -> bool:
    return conn.execute(f"SELECT 1 FROM {_table(kind)} WHERE name = ?", (name,)).fetchone() is not None


def object_enabled(conn, kind: str, name: str) -> bool | None:
    """Whether the object is enabled; None when there is none by that name."""
    row = conn.execute(f"SELECT enabled FROM {_table(kind)} WHERE name = ?", (name,)).fetchone()
    return None if row is None else bool(row[0])


def settings(conn) -> dict[str, str]:
    """``{name: spec text}`` of every setting."""
    return dict(conn.execute("SELECT name, spec FROM settings").fetchall())


def setting(conn, name: str) -> str | None:
    row = conn.execute("SELECT spec FROM settings WHERE name = ?", (name,)).fetchone()
    return row[0] if row else None


def link_pairs(conn, link_table: str) -> set[tuple[str, str]]:
    """Every ``(task, other)`` pair of a link table."""
    task_col, other = LINKS[link_table]
    return set(conn.execute(f"SELECT {task_col}, {other} FROM {link_table}").fetchall())


def link_pairs_touching(conn, link_table: str, tasks: Sequence[str],
                        others: Sequence[str] = ()) -> set[tuple[str, str]]:
    """The ``(task, other)`` pairs of a link table whose task is among ``tasks`` or whose other
    object is among ``others``."""
    task_col, other = LINKS[link_table]
    by_task, task_params = in_values(conn, task_col, tasks)
    by_other, other_params = in_values(conn, other, others)
    return set(map(tuple, conn.execute(f"SELECT {task_col}, {other} FROM {link_table} "
                                       f"WHERE {by_task} OR {by_other}", [*task_params, *other_params])))


def tasks_linked(conn, link_table: str, others: Sequence[str] | None = None) -> dict[str, list[str]]:
    """``{other object: [task, ...]}`` (tasks in name order) for a link table; only the objects
    ``others`` names when given."""
    task_col, other = LINKS[link_table]
    sql, params = f"SELECT {other}, {task_col} FROM {link_table}", []
    if others is not None:
        clause, params = in_values(conn, other, others)
        sql += f" WHERE {clause}"
    return _grouped(conn.execute(sql + f" ORDER BY {task_col}", params))


def links_of_tasks(conn, link_table: str) -> dict[str, list[str]]:
    """``{task: [other object, ...]}`` (objects in name order) for a link table."""
    task_col, other = LINKS[link_table]
    return _grouped(conn.execute(f"SELECT {task_col}, {other} FROM {link_table} ORDER BY {other}"))


def _grouped(cursor) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for a, b in cursor:
        out.setdefault(a, []).append(b)
    return out


# -- writing objects (inside the caller's write transaction) ------------------------------------


def _keep_toggle(conn, table: str) -> str:
    """``enabled`` on update: a toggle from the CLI (``tasks disable``) outlives an apply that
    changes other fields; the file wins when its own ``enabled`` changes."""
    default = "'true'" if is_postgres(conn) else "1"
    old = json_text(conn, f"{table}.spec", "enabled")
    new = json_text(conn, "excluded.spec", "enabled")
    return (f"CASE WHEN coalesce({old}, {default}) = coalesce({new}, {default}) "
            f"THEN {table}.enabled ELSE excluded.enabled END")


def upsert_objects(conn, kind: str, rows: Iterable[tuple], now: str) -> None:
    """Create or update objects of ``kind`` from ``(name, spec text, enabled, description,
    file)`` rows (tasks add their ``action``); a task written again is no longer retired."""
    table = _table(kind)
    task = table == "tasks"
    extra_cols = ", action, retired_at" if task else ""
    extra_vals = ", ?, NULL" if task else ""
    extra_set = ", action = excluded.action, retired_at = NULL" if task else ""
    conn.executemany(
        f"INSERT INTO {table} (name, spec, enabled, description, file, created_at, updated_at{extra_cols}) "
        f"VALUES (?, ?, ?, ?, ?, ?, ?{extra_vals}) ON CONFLICT (name) DO UPDATE SET "
        f"spec = excluded.spec, enabled = {_keep_toggle(conn, table)}, description = excluded.description, "
        f"file = excluded.file, updated_at = excluded.updated_at{extra_set}",
        ((name, spec, int(enabled), description, file, now, now, *rest)
         for name, spec, enabled, description, file, *rest in rows))


def set_object_files(conn, kind: str, rows: Sequence[tuple[str, str]]) -> None:
    """Record that unchanged objects now come from another file: ``(name, file)`` rows."""
    if rows:
        conn.executemany(f"UPDATE {_table(kind)} SET file = ? WHERE name = ?", [(file, name) for name, file in rows])


def delete_objects(conn, kind: str, names: Sequence[str]) -> None:
    """Delete the named objects of ``kind`` (their links go with them: ON DELETE CASCADE)."""
    if names:
        clause, params = in_values(conn, "name", names)
        conn.execute(f"DELETE FROM {_table(kind)} WHERE {clause}", params)


def set_enabled(conn, kind: str, name: str, enabled: bool, now: str) -> bool:
    """Set one object's ``enabled``; returns whether a row changed (False: none by that name,
    or it already was)."""
    cursor = conn.execute(f"UPDATE {_table(kind)} SET enabled = ?, updated_at = ? WHERE name = ? AND enabled != ?",
                          (int(enabled), now, name, int(enabled)))
    return cursor.rowcount > 0


def retire_tasks(conn, names: Sequence[str], now: str) -> list[str]:
    """Mark the named tasks retired (a ``delete_after_run`` task that ran); returns the names
    that were not retired yet."""
    if not names:
        return []
    clause, params = in_values(conn, "name", names)
    return [r[0] for r in conn.execute(
        f"UPDATE tasks SET retired_at = ? WHERE {clause} AND retired_at IS NULL RETURNING name",
        [now, *params])]


def upsert_settings(conn, rows: Iterable[tuple[str, str, str | None]], now: str) -> None:
    """Create or update settings from ``(name, spec text, file)`` rows."""
    conn.executemany(
        "INSERT INTO settings (name, spec, file, created_at, updated_at) VALUES (?, ?, ?, ?, ?) "
        "ON CONFLICT (name) DO UPDATE SET spec = excluded.spec, file = excluded.file, "
        "updated_at = excluded.updated_at",
        ((name, spec, file, now, now) for name, spec, file in rows))


def delete_settings(conn, names: Sequence[str]) -> None:
    if names:
        clause, params = in_values(conn, "name", names)
        conn.execute(f"DELETE FROM settings WHERE {clause}", params)


def change_links(conn, link_table: str, add: Iterable[tuple[str, str]],
                 remove: Iterable[tuple[str, str]]) -> None:
    """Remove and add ``(task, other)`` pairs of a link table."""
    task_col, other = LINKS[link_table]
    remove, add = sorted(remove), sorted(add)
    if remove:
        conn.executemany(f"DELETE FROM {link_table} WHERE {task_col} = ? AND {other} = ?", remove)
    if add:
        conn.executemany(f"INSERT INTO {link_table} ({task_col}, {other}) VALUES (?, ?)", add)


def forget_schedule_state(conn, schedules: Sequence[str]) -> None:
    """Drop the persisted next fire time of deleted schedules (one added again starts afresh)."""
    if schedules:
        clause, params = in_values(conn, "schedule", schedules)
        conn.execute(f"DELETE FROM schedule_state WHERE {clause}", params)


# -- what the last apply checked and applied (see rules/fingerprint.py) --------------------------


def applied_marks(conn) -> dict[str, str]:
    """``validated_with`` (the validation key the stored specs were checked under) and
    ``applied_files`` (the digest of the rule files last applied, and the generation it left),
    when recorded."""
    return dict(conn.execute("SELECT key, value FROM meta WHERE key IN ('validated_with', 'applied_files')"
                             ).fetchall())


def set_applied_marks(conn, validated_with: str, applied_files: str) -> None:
    """Record both marks (inside the transaction that wrote the configuration they describe;
    an empty value records that nothing is known)."""
    conn.executemany("INSERT INTO meta (key, value) VALUES (?, ?) "
                     "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                     [("validated_with", validated_with), ("applied_files", applied_files)])
