"""Reading (and toggling) the configured objects as stored by ``apply``."""

from __future__ import annotations

import json

from taskengine_core.apply import audit_rows, bump_generation
from taskengine_core.clock import Clock, to_iso
from taskengine_core.errors import NotFoundError
from taskengine_core.store import Store, where

TABLE_OF_KIND = {"task": "tasks", "schedule": "schedules", "event": "event_rules", "webhook": "webhooks"}


def _links(store: Store, sql: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for a, b in store.conn.execute(sql):
        out.setdefault(a, []).append(b)
    return out


def list_tasks(store: Store) -> list[dict]:
    schedules = _links(store, "SELECT task, schedule FROM task_schedules ORDER BY schedule")
    events = _links(store, "SELECT task, event_rule FROM task_events ORDER BY event_rule")
    webhooks = _links(store, "SELECT task, webhook FROM task_webhooks ORDER BY webhook")
    rows = []
    for r in store.db.query("SELECT * FROM tasks ORDER BY name"):
        spec = json.loads(r["spec"])
        rows.append({
            "name": r["name"], "action": r["action"], "enabled": bool(r["enabled"]),
            "retired_at": r["retired_at"], "description": r["description"],
            "schedules": schedules.get(r["name"], []), "events": events.get(r["name"], []),
            "webhooks": webhooks.get(r["name"], []), "spec": spec, "file": r["file"],
            "updated_at": r["updated_at"],
        })
    return rows


def get_task(store: Store, name: str) -> dict:
    for row in list_tasks(store):  # small enough; keeps one shape for list and show
        if row["name"] == name:
            return row
    raise NotFoundError(f"no task named {name!r}; see 'taskengine tasks list'")


def list_objects(store: Store, kind: str) -> list[dict]:
    table = TABLE_OF_KIND[kind]
    link_sql = {
        "schedule": "SELECT schedule, task FROM task_schedules ORDER BY task",
        "event": "SELECT event_rule, task FROM task_events ORDER BY task",
        "webhook": "SELECT webhook, task FROM task_webhooks ORDER BY task",
    }[kind]
    tasks = _links(store, link_sql)
    return [
        {"name": r["name"], "enabled": bool(r["enabled"]), "description": r["description"],
         "tasks": tasks.get(r["name"], []), "spec": json.loads(r["spec"]), "file": r["file"],
         "updated_at": r["updated_at"]}
        for r in store.db.query(f"SELECT * FROM {table} ORDER BY name")
    ]


def object_exists(store: Store, section: str, name: str) -> bool:
    """Whether the rule-file ``section`` (``webhooks``, ``tasks``, ...) defines ``name``."""
    table = {"events": "event_rules"}.get(section, section)
    if table not in TABLE_OF_KIND.values():
        return True  # not a section this catalog knows: the attempt checks it
    return store.conn.execute(f"SELECT 1 FROM {table} WHERE name = ?", (name,)).fetchone() is not None


def set_enabled(store: Store, kind: str, name: str, enabled: bool, *, clock: Clock | None = None,
                actor: str | None = None, source: str = "cli") -> bool:
    """Enable or disable one object; returns False when it already was. Audited under ``actor``
    (default: the OS user)."""
    table = TABLE_OF_KIND[kind]
    now = to_iso((clock or Clock()).now())
    with store.write() as db:
        row = db.execute(f"SELECT enabled FROM {table} WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise NotFoundError(f"no {kind} named {name!r}; see 'taskengine {table.replace('event_rules', 'events')} list'")
        if bool(row[0]) == enabled:
            return False
        db.execute(f"UPDATE {table} SET enabled = ?, updated_at = ? WHERE name = ?", (int(enabled), now, name))
        audit_rows(db.conn, [("enabled" if enabled else "disabled", kind, name,
                              {"enabled": {"from": not enabled, "to": enabled}})], now, actor=actor,
                   source=source)
        bump_generation(db.conn)
    return True


def list_audit(store: Store, limit: int = 100, kind: str | None = None, name: str | None = None) -> list[dict]:
    clause, params = where(kind=kind, name=name)
    sql = f"SELECT * FROM audit{clause} ORDER BY id DESC LIMIT ?"
    rows = list(store.db.query(sql, params + [limit]))
    for row in rows:
        row["changes"] = json.loads(row["changes"])
    return rows
