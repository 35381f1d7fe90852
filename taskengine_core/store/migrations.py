"""Schema migrations, applied on every open. Never edit a migration after it has shipped:
add a new one below it."""

from __future__ import annotations

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

from taskengine_core.store.migrations_shared import CONFIG_LOGGED, FINAL_DELIVERY, FINAL_RUN

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


@MIGRATIONS()
def m002_runtime(db: Database) -> None:
    """The events inbox, runs and their attempts, trigger decisions and throttle windows."""
    db.executescript(
        """
        CREATE TABLE events (
            seq INTEGER PRIMARY KEY,
            id TEXT NOT NULL UNIQUE,
            type TEXT NOT NULL,
            source TEXT NOT NULL,
            source_id TEXT,
            data TEXT NOT NULL,
            time TEXT NOT NULL,
            received_at TEXT NOT NULL,
            processed_at TEXT,
            duplicate_of TEXT);
        CREATE INDEX events_unprocessed ON events(seq) WHERE processed_at IS NULL;
        CREATE INDEX events_by_source_id ON events(source, source_id) WHERE source_id IS NOT NULL;
        CREATE INDEX events_by_received ON events(received_at);
        CREATE TABLE runs (
            id TEXT PRIMARY KEY,
            task TEXT NOT NULL,
            status TEXT NOT NULL,
            trigger TEXT NOT NULL,
            event_id TEXT,
            rule TEXT,
            schedule TEXT,
            slot TEXT,
            params TEXT,
            not_before TEXT NOT NULL,
            created_at TEXT NOT NULL,
            started_at TEXT,
            finished_at TEXT,
            attempt INTEGER NOT NULL DEFAULT 0,
            max_attempts INTEGER NOT NULL DEFAULT 1,
            lease_owner TEXT,
            lease_expires TEXT,
            cancel_requested INTEGER NOT NULL DEFAULT 0,
            error TEXT,
            output TEXT,
            duration REAL,
            attention INTEGER NOT NULL DEFAULT 0,
            depth INTEGER NOT NULL DEFAULT 0,
            plugin TEXT,
            plugin_version TEXT);
        CREATE INDEX runs_due ON runs(not_before) WHERE status = 'pending';
        CREATE INDEX runs_running ON runs(task) WHERE status = 'running';
        CREATE INDEX runs_by_task ON runs(task, created_at);
        CREATE INDEX runs_by_created ON runs(created_at);
        CREATE INDEX runs_by_event ON runs(event_id) WHERE event_id IS NOT NULL;
        CREATE TABLE attempts (
            id INTEGER PRIMARY KEY,
            run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
            number INTEGER NOT NULL,
            started_at TEXT NOT NULL,
            finished_at TEXT,
            outcome TEXT NOT NULL,
            error TEXT,
            traceback TEXT,
            output TEXT,
            duration REAL,
            plugin TEXT,
            plugin_version TEXT,
            UNIQUE (run_id, number));
        CREATE TABLE decisions (
            id INTEGER PRIMARY KEY,
            time TEXT NOT NULL,
            decision TEXT NOT NULL,
            reason TEXT NOT NULL DEFAULT '',
            event_id TEXT,
            rule TEXT,
            schedule TEXT,
            slot TEXT,
            task TEXT,
            run_id TEXT);
        CREATE INDEX decisions_by_event ON decisions(event_id) WHERE event_id IS NOT NULL;
        CREATE INDEX decisions_by_task ON decisions(task, time);
        CREATE INDEX decisions_by_time ON decisions(time);
        CREATE TABLE throttles (
            rule TEXT NOT NULL,
            key TEXT NOT NULL,
            until TEXT NOT NULL,
            PRIMARY KEY (rule, key)) WITHOUT ROWID;
        """
    )


@MIGRATIONS()
def m003_webhook_deliveries(db: Database) -> None:
    """Webhook deliveries (one row per message; its id is the ``webhook-id`` header, kept across
    retries and redelivery) and every attempt to send one. Retries are ``next_attempt_at`` rows,
    so they survive a restart; secrets are never stored resolved."""
    db.executescript(
        """
        CREATE TABLE webhook_deliveries (
            id TEXT PRIMARY KEY,
            webhook TEXT NOT NULL,
            status TEXT NOT NULL,
            type TEXT NOT NULL,
            body TEXT NOT NULL,
            content_type TEXT NOT NULL,
            headers TEXT NOT NULL DEFAULT '{}',
            task TEXT,
            run_id TEXT,
            event_id TEXT,
            created_at TEXT NOT NULL,
            next_attempt_at TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            max_attempts INTEGER NOT NULL DEFAULT 1,
            lease_owner TEXT,
            lease_expires TEXT,
            last_status_code INTEGER,
            last_error TEXT,
            finished_at TEXT);
        CREATE INDEX webhook_deliveries_due ON webhook_deliveries(webhook, next_attempt_at)
            WHERE status = 'pending';
        CREATE INDEX webhook_deliveries_next ON webhook_deliveries(next_attempt_at)
            WHERE status = 'pending';
        CREATE INDEX webhook_deliveries_sending ON webhook_deliveries(lease_expires)
            WHERE status = 'sending';
        CREATE INDEX webhook_deliveries_by_webhook ON webhook_deliveries(webhook, created_at);
        CREATE INDEX webhook_deliveries_by_created ON webhook_deliveries(created_at);
        CREATE INDEX webhook_deliveries_by_run ON webhook_deliveries(run_id) WHERE run_id IS NOT NULL;
        CREATE TABLE webhook_attempts (
            id INTEGER PRIMARY KEY,
            delivery_id TEXT NOT NULL REFERENCES webhook_deliveries(id) ON DELETE CASCADE,
            number INTEGER NOT NULL,
            request_id TEXT NOT NULL,
            started_at TEXT NOT NULL,
            duration REAL,
            address TEXT,
            status_code INTEGER,
            outcome TEXT NOT NULL,
            error TEXT,
            response_excerpt TEXT,
            request_headers TEXT,
            next_attempt_at TEXT,
            UNIQUE (delivery_id, number));
        """
    )


@MIGRATIONS()
def m004_schedules(db: Database) -> None:
    """Each schedule's persisted next fire time, and every slot it claimed (once: unique key)."""
    db.executescript(
        """
        CREATE TABLE schedule_state (
            schedule TEXT PRIMARY KEY,
            spec_hash TEXT NOT NULL,
            next_fire TEXT,
            last_slot TEXT,
            updated_at TEXT NOT NULL) WITHOUT ROWID;
        CREATE TABLE schedule_slots (
            schedule TEXT NOT NULL,
            due TEXT NOT NULL,
            status TEXT NOT NULL,
            claimed_at TEXT NOT NULL,
            reason TEXT NOT NULL DEFAULT '',
            PRIMARY KEY (schedule, due)) WITHOUT ROWID;
        CREATE INDEX decisions_by_schedule ON decisions(schedule, slot) WHERE schedule IS NOT NULL;
        """
    )


@MIGRATIONS()
def m005_source_state(db: Database) -> None:
    """Durable key/value state of plugins: a source's file offsets and cursors, an action's last
    seen set. Scoped by name; values are JSON."""
    db.executescript(
        """
        CREATE TABLE plugin_state (
            scope TEXT NOT NULL,
            key TEXT NOT NULL,
            value TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            PRIMARY KEY (scope, key)) WITHOUT ROWID;
        """
    )


# -- issue 9 (stalls and slow paths): indexes and the configuration change log -----------------

_FINAL_RUN = FINAL_RUN
_FINAL_DELIVERY = FINAL_DELIVERY


@MIGRATIONS()
def m006_indexes_for_logs_prune_and_dispatch(db: Database) -> None:
    """Indexes for ``logs show`` (decisions by run), ``logs list --status`` and ``webhooks
    deliveries --status`` (newest first within a final status: partial, so that the claim and
    dispatch queries on pending and running rows keep their own indexes), and for retention:
    finished runs and deliveries by the time they expire, throttle windows and schedule slots
    by their end."""
    db.executescript(
        f"""
        CREATE INDEX decisions_by_run ON decisions(run_id) WHERE run_id IS NOT NULL;
        CREATE INDEX runs_by_status ON runs(status, created_at) WHERE {_FINAL_RUN};
        CREATE INDEX runs_expiry ON runs(coalesce(finished_at, created_at)) WHERE {_FINAL_RUN};
        CREATE INDEX webhook_deliveries_by_status ON webhook_deliveries(status, created_at)
            WHERE {_FINAL_DELIVERY};
        CREATE INDEX webhook_deliveries_expiry ON webhook_deliveries(coalesce(finished_at, created_at))
            WHERE {_FINAL_DELIVERY};
        CREATE INDEX throttles_by_until ON throttles(until);
        CREATE INDEX schedule_slots_by_due ON schedule_slots(due);
        """
    )


_LOGGED = CONFIG_LOGGED


@MIGRATIONS()
def m007_config_changes(db: Database) -> None:
    """A log of which configured objects changed (written by triggers, so every writer is
    covered: ``apply``, enable/disable, retiring, a webhook's 410). A running engine reloads only
    what changed since the last row it saw; ``meta.config_changes_pruned_through`` says up to
    where the log was pruned (an engine behind that reloads everything)."""
    triggers = []
    for table, (kind, column) in _LOGGED.items():
        for event, row in (("INSERT", "new"), ("UPDATE", "new"), ("DELETE", "old")):
            triggers.append(
                f"CREATE TRIGGER {table}_logged_{event.lower()} AFTER {event} ON {table} BEGIN "
                f"INSERT INTO config_changes (kind, name) VALUES ('{kind}', {row}.{column}); END;")
        triggers.append(  # a renamed row (only by hand) changes the old name too
            f"CREATE TRIGGER {table}_logged_rename AFTER UPDATE OF {column} ON {table} "
            f"WHEN old.{column} IS NOT new.{column} BEGIN "
            f"INSERT INTO config_changes (kind, name) VALUES ('{kind}', old.{column}); END;")
    db.executescript(
        "CREATE TABLE config_changes (seq INTEGER PRIMARY KEY, kind TEXT NOT NULL, name TEXT NOT NULL);\n"
        "INSERT INTO meta (key, value) VALUES ('config_changes_pruned_through', '0');\n"
        + "\n".join(triggers))


@MIGRATIONS()
def m008_leases_and_nodes(db: Database) -> None:
    """Leases: a named piece of work (an event source that must run once in the whole cluster)
    held by one engine until it expires. Nodes: the engines sharing this database, each seen at
    its last heartbeat (``taskengine status`` and the dashboard list them)."""
    db.executescript(
        """
        CREATE TABLE leases (
            name TEXT PRIMARY KEY,
            owner TEXT NOT NULL,
            expires TEXT NOT NULL,
            acquired_at TEXT NOT NULL) WITHOUT ROWID;
        CREATE TABLE nodes (
            id TEXT PRIMARY KEY,
            host TEXT NOT NULL,
            pid INTEGER NOT NULL,
            started_at TEXT NOT NULL,
            seen_at TEXT NOT NULL) WITHOUT ROWID;
        """
    )
