"""Schema migrations, applied on every open. Never edit a migration after it has shipped:
add a new one below it."""

from __future__ import annotations

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

MIGRATIONS = Migrations("taskengine")

_CONFIG_COLUMNS = """
    name TEXT PRIMARY KEY,
    spec TEXT NOT NULL,
    enabled INTEGER NOT NULL DEFAULT 1,
    description TEXT NOT NULL DEFAULT '',
    file TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
"""


@MIGRATIONS()
def m001_config(db: Database) -> None:
    """The configured objects (from rule files), their links, and the audit log."""
    db.executescript(
        f"""
        CREATE TABLE settings (name TEXT PRIMARY KEY, spec TEXT NOT NULL, file TEXT,
                               created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
        CREATE TABLE tasks ({_CONFIG_COLUMNS}, action TEXT NOT NULL, retired_at TEXT);
        CREATE TABLE schedules ({_CONFIG_COLUMNS});
        CREATE TABLE event_rules ({_CONFIG_COLUMNS});
        CREATE TABLE webhooks ({_CONFIG_COLUMNS});
        CREATE TABLE task_schedules (
            task TEXT NOT NULL REFERENCES tasks(name) ON DELETE CASCADE,
            schedule TEXT NOT NULL REFERENCES schedules(name) ON DELETE CASCADE,
            PRIMARY KEY (task, schedule)) WITHOUT ROWID;
        CREATE INDEX task_schedules_by_schedule ON task_schedules(schedule);
        CREATE TABLE task_events (
            task TEXT NOT NULL REFERENCES tasks(name) ON DELETE CASCADE,
            event_rule TEXT NOT NULL REFERENCES event_rules(name) ON DELETE CASCADE,
            PRIMARY KEY (task, event_rule)) WITHOUT ROWID;
        CREATE INDEX task_events_by_rule ON task_events(event_rule);
        CREATE TABLE task_webhooks (
            task TEXT NOT NULL REFERENCES tasks(name) ON DELETE CASCADE,
            webhook TEXT NOT NULL REFERENCES webhooks(name) ON DELETE CASCADE,
            PRIMARY KEY (task, webhook)) WITHOUT ROWID;
        CREATE INDEX task_webhooks_by_webhook ON task_webhooks(webhook);
        CREATE TABLE audit (
            id INTEGER PRIMARY KEY,
            time TEXT NOT NULL,
            actor TEXT NOT NULL,
            action TEXT NOT NULL,
            kind TEXT NOT NULL,
            name TEXT NOT NULL,
            changes TEXT NOT NULL DEFAULT '{{}}',
            source TEXT);
        CREATE INDEX audit_by_time ON audit(time);
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        INSERT INTO meta (key, value) VALUES ('config_generation', '0');
        """
    )
