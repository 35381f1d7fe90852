"""What the SQLite and PostgreSQL schemas share: the configuration tables whose changes are
logged, and which run and delivery statuses are final (the partial indexes' conditions)."""

from __future__ import annotations

FINAL_RUN = "status IN ('succeeded', 'failed', 'cancelled', 'skipped', 'interrupted')"
FINAL_DELIVERY = "status IN ('delivered', 'failed', 'exhausted')"

# table -> (kind, name column); link tables log the object whose loaded form they change
CONFIG_LOGGED = {
    "tasks": ("task", "name"), "event_rules": ("event", "name"), "schedules": ("schedule", "name"),
    "webhooks": ("webhook", "name"), "settings": ("setting", "name"),
    "task_events": ("event", "event_rule"), "task_schedules": ("schedule", "schedule"),
    "task_webhooks": ("webhook", "webhook"),
}
