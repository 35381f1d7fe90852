"""The whole schema a blank database migrates to, pinned: every table with its columns and
primary key, every index (with its columns and WHERE), every trigger and every migration. A
dropped or changed index fails here; a new one must be added here on purpose."""

from __future__ import annotations

import re

from taskengine_core.store import Store

MIGRATIONS = ["m001_config", "m002_runtime", "m003_webhook_deliveries", "m004_schedules",
              "m005_source_state", "m006_indexes_for_logs_prune_and_dispatch", "m007_config_changes",
              "m008_leases_and_nodes"]

CONFIG = ["name", "spec", "enabled", "description", "file", "created_at", "updated_at"]
TABLES = {  # table -> (columns, primary key)
    "_sqlite_migrations": (["id", "migration_set", "name", "applied_at"], ["id"]),
    "attempts": (["id", "run_id", "number", "started_at", "finished_at", "outcome", "error", "traceback",
                  "output", "duration", "plugin", "plugin_version"], ["id"]),
    "audit": (["id", "time", "actor", "action", "kind", "name", "changes", "source"], ["id"]),
    "config_changes": (["seq", "kind", "name"], ["seq"]),
    "decisions": (["id", "time", "decision", "reason", "event_id", "rule", "schedule", "slot", "task",
                   "run_id"], ["id"]),
    "event_rules": (CONFIG, ["name"]),
    "events": (["seq", "id", "type", "source", "source_id", "data", "time", "received_at", "processed_at",
                "duplicate_of"], ["seq"]),
    "meta": (["key", "value"], ["key"]),
    "plugin_state": (["scope", "key", "value", "updated_at"], ["scope", "key"]),
    "runs": (["id", "task", "status", "trigger", "event_id", "rule", "schedule", "slot", "params",
              "not_before", "created_at", "started_at", "finished_at", "attempt", "max_attempts",
              "lease_owner", "lease_expires", "cancel_requested", "error", "output", "duration",
              "attention", "depth", "plugin", "plugin_version"], ["id"]),
    "schedule_slots": (["schedule", "due", "status", "claimed_at", "reason"], ["schedule", "due"]),
    "schedule_state": (["schedule", "spec_hash", "next_fire", "last_slot", "updated_at"], ["schedule"]),
    "schedules": (CONFIG, ["name"]),
    "settings": (["name", "spec", "file", "created_at", "updated_at"], ["name"]),
    "task_events": (["task", "event_rule"], ["task", "event_rule"]),
    "task_schedules": (["task", "schedule"], ["task", "schedule"]),
    "task_webhooks": (["task", "webhook"], ["task", "webhook"]),
    "tasks": (CONFIG + ["action", "retired_at"], ["name"]),
    "throttles": (["rule", "key", "until"], ["rule", "key"]),
    "leases": (["name", "owner", "expires", "acquired_at"], ["name"]),
    "nodes": (["id", "host", "pid", "started_at", "seen_at"], ["id"]),
    "webhook_attempts": (["id", "delivery_id", "number", "request_id", "started_at", "duration", "address",
                         "status_code", "outcome", "error", "response_excerpt", "request_headers",
                         "next_attempt_at"], ["id"]),
    "webhook_deliveries": (["id", "webhook", "status", "type", "body", "content_type", "headers", "task",
                           "run_id", "event_id", "created_at", "next_attempt_at", "attempts",
                           "max_attempts", "lease_owner", "lease_expires", "last_status_code",
                           "last_error", "finished_at"], ["id"]),
    "webhooks": (CONFIG, ["name"]),
}

INDEXES = {
    "audit_by_time": "audit(time)",
    "decisions_by_event": "decisions(event_id) WHERE event_id IS NOT NULL",
    "decisions_by_run": "decisions(run_id) WHERE run_id IS NOT NULL",
    "decisions_by_schedule": "decisions(schedule, slot) WHERE schedule IS NOT NULL",
    "decisions_by_task": "decisions(task, time)",
    "decisions_by_time": "decisions(time)",
    "events_by_received": "events(received_at)",
    "events_by_source_id": "events(source, source_id) WHERE source_id IS NOT NULL",
    "events_unprocessed": "events(seq) WHERE processed_at IS NULL",
    "idx__sqlite_migrations_migration_set_name": '"_sqlite_migrations" ("migration_set", "name")',
    "runs_by_created": "runs(created_at)",
    "runs_by_event": "runs(event_id) WHERE event_id IS NOT NULL",
    "runs_by_status": "runs(status, created_at) WHERE status IN ('succeeded', 'failed', 'cancelled', "
                      "'skipped', 'interrupted')",
    "runs_by_task": "runs(task, created_at)",
    "runs_due": "runs(not_before) WHERE status = 'pending'",
    "runs_expiry": "runs(coalesce(finished_at, created_at)) WHERE status IN ('succeeded', 'failed', "
                   "'cancelled', 'skipped', 'interrupted')",
    "runs_running": "runs(task) WHERE status = 'running'",
    "schedule_slots_by_due": "schedule_slots(due)",
    "task_events_by_rule": "task_events(event_rule)",
    "task_schedules_by_schedule": "task_schedules(schedule)",
    "task_webhooks_by_webhook": "task_webhooks(webhook)",
    "throttles_by_until": "throttles(until)",
    "webhook_deliveries_by_created": "webhook_deliveries(created_at)",
    "webhook_deliveries_by_run": "webhook_deliveries(run_id) WHERE run_id IS NOT NULL",
    "webhook_deliveries_by_status": "webhook_deliveries(status, created_at) WHERE status IN "
                                    "('delivered', 'failed', 'exhausted')",
    "webhook_deliveries_by_webhook": "webhook_deliveries(webhook, created_at)",
    "webhook_deliveries_due": "webhook_deliveries(webhook, next_attempt_at) WHERE status = 'pending'",
    "webhook_deliveries_expiry": "webhook_deliveries(coalesce(finished_at, created_at)) WHERE status IN "
                                 "('delivered', 'failed', 'exhausted')",
    "webhook_deliveries_next": "webhook_deliveries(next_attempt_at) WHERE status = 'pending'",
    "webhook_deliveries_sending": "webhook_deliveries(lease_expires) WHERE status = 'sending'",
    # the indexes behind PRIMARY KEY and UNIQUE constraints
    "sqlite_autoindex_attempts_1": "attempts(run_id, number) UNIQUE",
    "sqlite_autoindex_event_rules_1": "event_rules(name) UNIQUE",
    "sqlite_autoindex_events_1": "events(id) UNIQUE",
    "sqlite_autoindex_meta_1": "meta(key) UNIQUE",
    "sqlite_autoindex_runs_1": "runs(id) UNIQUE",
    "sqlite_autoindex_schedules_1": "schedules(name) UNIQUE",
    "sqlite_autoindex_settings_1": "settings(name) UNIQUE",
    "sqlite_autoindex_tasks_1": "tasks(name) UNIQUE",
    "sqlite_autoindex_webhook_attempts_1": "webhook_attempts(delivery_id, number) UNIQUE",
    "sqlite_autoindex_webhook_deliveries_1": "webhook_deliveries(id) UNIQUE",
    "sqlite_autoindex_webhooks_1": "webhooks(name) UNIQUE",
}

# every change to a configured object or its links is logged for the engine's incremental reload
TRIGGERS = {f"{table}_logged_{what}" for table in (
    "tasks", "event_rules", "schedules", "webhooks", "settings", "task_events", "task_schedules",
    "task_webhooks") for what in ("insert", "update", "delete", "rename")}


def schema(conn):
    tables = {}
    for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                                "AND name NOT LIKE 'sqlite_%' ORDER BY name"):
        info = conn.execute(f"PRAGMA table_info({name})").fetchall()
        tables[name] = ([r[1] for r in info], [r[1] for r in sorted(info, key=lambda r: r[5]) if r[5]])
    indexes = {}
    for name, table, sql in conn.execute("SELECT name, tbl_name, sql FROM sqlite_master WHERE type = 'index'"):
        if sql is None:
            columns = [r[2] for r in conn.execute(f"PRAGMA index_info({name})")]
            indexes[name] = f"{table}({', '.join(columns)}) UNIQUE"
        else:
            indexes[name] = re.sub(r"\s+", " ", sql[sql.index(" ON ") + 4:])
    triggers = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")}
    return tables, indexes, triggers


def test_every_table_index_and_trigger_is_pinned(tmp_path):
    store = Store(tmp_path / "fresh.db")
    tables, indexes, triggers = schema(store.conn)
    assert tables == TABLES
    assert indexes == INDEXES
    assert triggers == TRIGGERS
    applied = [r[0] for r in store.conn.execute("SELECT name FROM _sqlite_migrations ORDER BY id")]
    assert applied == MIGRATIONS


def test_a_dropped_index_is_noticed(tmp_path):
    store = Store(tmp_path / "fresh.db")
    store.conn.execute("DROP INDEX decisions_by_run")
    assert "decisions_by_run" not in schema(store.conn)[1]
    assert schema(store.conn)[1] != INDEXES


def test_an_upgraded_database_gets_the_same_schema(tmp_path):
    """A database made by the migrations shipped before issue 9, with rows in it,
    migrates to exactly the pinned schema, and its rows keep their places."""
    import sqlite_utils
    from sqlite_utils.migrations import Migrations

    from taskengine_core.store.migrations import MIGRATIONS as SET

    path = tmp_path / "old.db"
    db = sqlite_utils.Database(path)
    shipped = Migrations(SET.name)
    for migration in SET._migrations[:5]:
        shipped()(migration.fn)
    shipped.apply(db)
    db.execute("INSERT INTO tasks (name, spec, created_at, updated_at, action) VALUES "
               "('t', '{\"action\": \"command.run\"}', 'x', 'x', 'command.run')")
    db.conn.commit()
    store = Store(path)
    tables, indexes, triggers = schema(store.conn)
    assert (tables, indexes, triggers) == (TABLES, INDEXES, TRIGGERS)
    assert store.conn.execute("SELECT name FROM tasks").fetchall() == [("t",)]
