"""Reading (and toggling) the configured objects as stored by ``apply``."""

from __future__ import annotations

import json

from taskengine_core.apply import current_actor
from taskengine_core.clock import Clock, to_iso
from taskengine_core.errors import NotFoundError
from taskengine_core.store import Store, audit
from taskengine_core.store import config as stored

TABLE_OF_KIND = stored.TABLE_OF_KIND
_SECTION_KIND = {"tasks": "task", "schedules": "schedule", "events": "event", "webhooks": "webhook",
                 "event_rules": "event"}


def list_tasks(store: Store) -> list[dict]:
    conn = store.conn
    schedules = stored.links_of_tasks(conn, "task_schedules")
    events = stored.links_of_tasks(conn, "task_events")
    webhooks = stored.links_of_tasks(conn, "task_webhooks")
    rows = []
    for r in stored.object_rows(conn, "task"):
        spec = _spec(r["spec"])
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
    conn = store.conn
    tasks = stored.tasks_linked(conn, stored.LINK_OF_KIND[kind])
    return [
        {"name": r["name"], "enabled": bool(r["enabled"]), "description": r["description"],
         "tasks": tasks.get(r["name"], []), "spec": _spec(r["spec"]), "file": r["file"],
         "updated_at": r["updated_at"]}
        for r in stored.object_rows(conn, kind)
    ]


def object_exists(store: Store, section: str, name: str) -> bool:
    """Whether the rule-file ``section`` (``webhooks``, ``tasks``, ...) defines ``name``."""
    kind = _SECTION_KIND.get(section)
    if kind is None:
        return True  # not a section this catalog knows: the attempt checks it
    return stored.object_exists(store.conn, kind, name)


def set_enabled(store: Store, kind: str, name: str, enabled: bool, *, clock: Clock | None = None,
                actor: str | None = None, source: str = "cli") -> bool:
    """Enable or disable one object; returns False when it already was. Audited under ``actor``
    (default: the OS user)."""
    table = TABLE_OF_KIND[kind]
    now = to_iso((clock or Clock()).now())
    with store.write() as db:
        stored.lock_for_change(db.conn)
        current = stored.object_enabled(db.conn, kind, name)
        if current is None:
            raise NotFoundError(f"no {kind} named {name!r}; see 'taskengine {table.replace('event_rules', 'events')} list'")
        # the update says whether it changed the row: another writer may have toggled it meanwhile
        if current == enabled or not stored.set_enabled(db.conn, kind, name, enabled, now):
            return False
        audit.record(db.conn, [("enabled" if enabled else "disabled", kind, name,
                                {"enabled": {"from": not enabled, "to": enabled}})], now,
                     actor=actor or current_actor(), source=source)
        stored.bump_generation(db.conn)
    return True


def list_audit(store: Store, limit: int = 100, kind: str | None = None, name: str | None = None) -> list[dict]:
    return audit.entries(store.conn, limit, kind=kind, name=name)


def _spec(value):
    return json.loads(value) if isinstance(value, str) else value
