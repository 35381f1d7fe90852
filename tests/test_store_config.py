"""The configuration, audit, task-log, retention and dashboard store functions, on SQLite and on
PostgreSQL: ``apply``'s diff and its audit rows in one transaction, enable/disable, retiring, the
change log an engine reloads from, ``logs list/show/explain``, pruning and the dashboard's reads."""

from __future__ import annotations

import json

import pytest

from taskengine_core.apply import apply_config
from taskengine_core.catalog import list_audit, list_objects, list_tasks, set_enabled
from taskengine_core.errors import NotFoundError
from taskengine_core.model import load_runtime, refresh_runtime
from taskengine_core.plugins import get_plugin_manager
from taskengine_core.rules.validate import load_config
from taskengine_core.store import audit, dashboard, open_store
from taskengine_core.store import config as stored
from taskengine_core.store import logs
from taskengine_core.task_logs import explain_event, list_runs, prune, show_run
from tests.conftest import FakeClock

RULES = """
settings:
  timezone: Europe/Paris
schedules:
  nightly: {cron: "0 2 * * *"}
tasks:
  backup:
    action: command.run
    with: {argv: [echo, backup]}
    schedules: [nightly]
  greet:
    action: command.run
    with: {argv: [echo, hi]}
events:
  login: {on: user.login, tasks: [greet, backup]}
"""
OLD, RECENT = "2026-01-01T00:00:00.000000Z", "2026-05-31T00:00:00.000000Z"
NOW = "2026-06-01T00:00:00+00:00"


@pytest.fixture
def store(db_target):
    store = open_store(db_target)
    yield store
    store.close()


@pytest.fixture
def config_of(write_rules):
    registry = get_plugin_manager().registry()

    def load(text: str):
        return load_config([write_rules(text)], registry)

    return load


def test_apply_round_trip_writes_objects_links_settings_and_audit(store, config_of):
    first = apply_config(store, config_of(RULES), actor="alice", source="apply")
    assert sorted((c.action, c.kind, c.name) for c in first.changes) == [
        ("created", "event", "login"), ("created", "schedule", "nightly"), ("created", "setting", "timezone"),
        ("created", "task", "backup"), ("created", "task", "greet")]
    tasks = {t["name"]: t for t in list_tasks(store)}
    assert tasks["backup"]["schedules"] == ["nightly"] and tasks["backup"]["events"] == ["login"]
    assert tasks["greet"]["spec"]["with"] == {"argv": ["echo", "hi"]} and tasks["greet"]["action"] == "command.run"
    assert [(o["name"], o["tasks"]) for o in list_objects(store, "event")] == [("login", ["backup", "greet"])]
    assert json.loads(stored.setting(store.conn, "timezone")) == "Europe/Paris"
    assert apply_config(store, config_of(RULES)).changes == []  # the same files: nothing to do
    generation = stored.generation(store.conn)

    changed = RULES.replace("argv: [echo, hi]", "argv: [echo, hello]").replace(
        "  login: {on: user.login, tasks: [greet, backup]}\n", "").replace("timezone: Europe/Paris", "timezone: UTC")
    second = apply_config(store, config_of(changed), actor="bob", source="apply")
    assert sorted((c.action, c.kind, c.name) for c in second.changes) == [
        ("deleted", "event", "login"), ("updated", "setting", "timezone"), ("updated", "task", "greet")]
    assert stored.generation(store.conn) == generation + 1
    assert list_objects(store, "event") == [] and stored.link_pairs(store.conn, "task_events") == set()
    rows = list_audit(store, 3)
    assert [(r["actor"], r["action"], r["kind"], r["name"]) for r in rows] == [
        ("bob", "updated", "setting", "timezone"), ("bob", "updated", "task", "greet"),
        ("bob", "deleted", "event", "login")]
    assert rows[1]["changes"] == {"with": {"from": {"argv": ["echo", "hi"]}, "to": {"argv": ["echo", "hello"]}}}
    assert [r["name"] for r in audit.entries(store.conn, 10, kind="task", name="greet")] == ["greet", "greet"]


def test_a_failed_apply_leaves_objects_and_audit_as_they_were(store, config_of, monkeypatch):
    apply_config(store, config_of(RULES))
    before = (list_tasks(store), list_objects(store, "event"), list_audit(store), stored.generation(store.conn))

    def broken(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(audit, "record", broken)  # fails after every object row is written
    with pytest.raises(RuntimeError, match="disk on fire"):
        apply_config(store, config_of(RULES.replace("echo, hi", "echo, bye").replace("schedules: [nightly]", "")))
    assert (list_tasks(store), list_objects(store, "event"), list_audit(store),
            stored.generation(store.conn)) == before


def test_a_toggle_outlives_an_apply_unless_the_file_changes_enabled(store, config_of):
    apply_config(store, config_of(RULES))
    assert set_enabled(store, "task", "greet", False, actor="carol") is True
    assert set_enabled(store, "task", "greet", False) is False  # already disabled: no audit row
    assert [(r["actor"], r["action"]) for r in list_audit(store, 1)] == [("carol", "disabled")]
    apply_config(store, config_of(RULES.replace("echo, hi", "echo, hey")))  # another field changes
    assert stored.object_enabled(store.conn, "task", "greet") is False
    assert set_enabled(store, "task", "greet", True) is True
    disabled_in_file = RULES.replace("    with: {argv: [echo, hi]}", "    with: {argv: [echo, hey]}\n    enabled: false")
    apply_config(store, config_of(disabled_in_file))  # the file's own enabled changes: the file wins
    assert stored.object_enabled(store.conn, "task", "greet") is False
    with pytest.raises(NotFoundError, match="no schedule named 'weekly'"):
        set_enabled(store, "schedule", "weekly", True)


def test_the_engine_reloads_what_the_change_log_names(store, config_of):
    apply_config(store, config_of(RULES))
    runtime = load_runtime(store)
    assert runtime.tasks["greet"].enabled and runtime.settings["timezone"] == "Europe/Paris"
    assert refresh_runtime(store, runtime) is runtime  # nothing changed: the same object
    set_enabled(store, "task", "greet", False)
    with store.write() as db:
        assert stored.retire_tasks(db.conn, ["backup", "nobody"], RECENT) == ["backup"]
        assert stored.retire_tasks(db.conn, ["backup"], RECENT) == []  # retired already
        stored.bump_generation(db.conn)
    changes, last = stored.changes_since(store.conn, runtime.changes_seq, 100)
    assert changes == {("task", "greet"), ("task", "backup")} and last > runtime.changes_seq
    fresh = refresh_runtime(store, runtime)
    assert not fresh.tasks["greet"].enabled and fresh.tasks["backup"].retired
    assert fresh.rules is runtime.rules  # no event rule changed: the index was kept


def test_the_change_log_is_pruned_to_the_newest_rows(store, config_of):
    apply_config(store, config_of(RULES))
    runtime = load_runtime(store)
    for i in range(5):  # off, on, off, on, off
        set_enabled(store, "task", "greet", i % 2 == 1)
    last = stored.last_change(store.conn)
    with store.write() as db:
        assert stored.prune_changes(db.conn, keep=3, batch=2) is True
        while stored.prune_changes(db.conn, keep=3, batch=2):
            pass
    assert stored.changes_since(store.conn, last - 3, 100)[0] == {("task", "greet")}
    assert stored.changes_since(store.conn, runtime.changes_seq, 100) == (None, 0)  # pruned past it
    assert refresh_runtime(store, runtime).tasks["greet"].enabled is False  # so: a full reload


def history(store) -> None:
    """Runs (finished long ago and lately, pending, running), attempts, decisions, events."""
    with store.write() as db:
        c = db.conn
        runs = [(f"done{i}", "succeeded", f"ev{i}", OLD, OLD) for i in range(5)]
        runs += [("failed-old", "failed", None, OLD, OLD), ("pending-old", "pending", "ev-pending", OLD, None),
                 ("running-old", "running", None, OLD, None), ("done-recent", "succeeded", "ev-recent", RECENT, RECENT)]
        c.executemany("INSERT INTO runs (id, task, status, trigger, event_id, not_before, created_at, finished_at, "
                      "params, output) VALUES (?, 't', ?, 'event', ?, ?, ?, ?, '{\"a\": 1}', NULL)",
                      [(i, s, e, created, created, finished) for i, s, e, created, finished in runs])
        c.executemany("INSERT INTO attempts (run_id, number, started_at, outcome, output) "
                      "VALUES (?, 1, ?, 'succeeded', '{\"ok\": true}')", [(r[0], r[3]) for r in runs])
        c.executemany("INSERT INTO decisions (time, decision, rule, task, run_id, event_id) "
                      "VALUES (?, 'matched', 'login', 't', ?, ?)", [(r[3], r[0], r[2]) for r in runs])
        c.executemany("INSERT INTO decisions (time, decision, event_id) VALUES (?, 'skipped', ?)",
                      [(OLD, f"ev{i}") for i in range(3)])
        events = [(f"ev{i}", OLD, OLD) for i in range(5)] + [
            ("ev-pending", OLD, OLD), ("ev-unprocessed", OLD, None), ("ev-recent", RECENT, RECENT)]
        c.executemany("INSERT INTO events (id, type, source, source_id, data, time, received_at, processed_at) "
                      "VALUES (?, 'user.login', 'test', NULL, '{\"user\": \"alice\"}', ?, ?, ?)",
                      [(e, t, t, p) for e, t, p in events])
        c.execute("INSERT INTO events (id, type, source, data, time, received_at, processed_at, duplicate_of) "
                  "VALUES ('ev-dup', 'user.login', 'test', '{}', ?, ?, ?, 'ev0')", (OLD, OLD, OLD))
        c.executemany("INSERT INTO throttles (rule, key, until) VALUES ('r', ?, ?)",
                      [("[1]", OLD), ("[2]", OLD), ("[3]", "2026-07-01T00:00:00Z")])
        c.executemany("INSERT INTO schedule_slots (schedule, due, status, claimed_at) VALUES ('s', ?, 'fired', ?)",
                      [(OLD, OLD), (RECENT, RECENT)])


def test_logs_list_show_and_explain(store, config_of):
    apply_config(store, config_of(RULES))
    history(store)
    newest = list_runs(store, limit=3)
    assert [r["id"] for r in newest] == ["done-recent", "running-old", "pending-old"]
    assert [r["id"] for r in list_runs(store, status="failed")] == ["failed-old"]
    assert [r["id"] for r in list_runs(store, task="t", status="succeeded", limit=2)] == ["done-recent", "done4"]
    since = list_runs(store, since_seconds=2 * 86400, clock=FakeClock(NOW))
    assert [r["id"] for r in since] == ["done-recent"]
    run = show_run(store, "done1")
    assert run["params"] == {"a": 1} and "rowid" not in run
    assert [a["output"] for a in run["attempts"]] == [{"ok": True}]
    assert [(d["decision"], d["rule"]) for d in run["decisions"]] == [("matched", "login")]
    assert run["event"]["data"] == {"user": "alice"} and run["event"]["type"] == "user.login"
    with pytest.raises(NotFoundError, match="no run with id 'nope'"):
        show_run(store, "nope")
    explained = explain_event(store, "ev0")
    assert [(d["decision"], d["run_id"]) for d in explained["decisions"]] == [("matched", "done0"), ("skipped", None)]
    assert explained["rules_now"] == [
        {"rule": "login", "matched": True, "reason": "matched (tasks backup: enabled, greet: enabled)"}]
    assert logs.duplicate_of(store.conn, "ev-dup") == "ev0" and logs.duplicate_of(store.conn, "ev0") is None


def test_prune_removes_old_finished_history_only(store):
    history(store)
    removed = prune(store, 86400 * 30, clock=FakeClock(NOW), batch=2, pause=0)
    # (decisions counts those left without a run; a deleted run's decisions go with it)
    assert removed == {"runs": 6, "events": 6, "decisions": 3}
    left = {r["id"] for r in list_runs(store, limit=100)}
    assert left == {"pending-old", "running-old", "done-recent"}
    events = {e["id"] for e in dashboard.recent_events(store.conn, 100)}
    assert events == {"ev-pending", "ev-unprocessed", "ev-recent"}  # a pending run's event stays
    assert [d["decision"] for d in logs.event_decisions(store.conn, "ev-pending")] == ["matched"]
    assert logs.event_decisions(store.conn, "ev0") == []
    assert logs.attempts(store.conn, "done0") == []  # attempts went with their runs
    assert [r[0] for r in store.conn.execute("SELECT key FROM throttles ORDER BY key")] == ["[3]"]
    assert [r[0] for r in store.conn.execute("SELECT due FROM schedule_slots")] == [RECENT]


def test_dashboard_reads(store, config_of):
    apply_config(store, config_of(RULES))
    history(store)
    with store.write() as db:  # the engine's own event about a run, found by its data's run_id
        db.conn.execute("INSERT INTO events (id, type, source, data, time, received_at) VALUES "
                        "('own', 'task.succeeded', 'taskengine', ?, ?, ?)",
                        (json.dumps({"run_id": "done-recent"}), RECENT, RECENT))
    assert dashboard.queue_depth(store.conn) == {"inbox": 2, "pending": 1, "running": 1}
    assert [r["id"] for r in dashboard.latest_failures(store.conn)] == ["failed-old"]
    first = dashboard.runs_page(store.conn, dashboard.RunFilter(), None, 4)
    after = dashboard.Cursor(first[-1]["created_at"], first[-1]["seq"])
    rest = dashboard.runs_page(store.conn, dashboard.RunFilter(), after, 100)
    assert [r["id"] for r in first + rest] == [r["id"] for r in list_runs(store, limit=100)]
    trace = dashboard.run_trace(store.conn, "done-recent")
    assert [e["id"] for e in trace["emitted"]] == ["own"] and trace["params"] == {"a": 1}
    assert "rowid" not in trace and trace["event"]["id"] == "ev-recent"
    nodes, edges = dashboard.wiring(store.conn)
    assert ("event", "login") in nodes and (("schedule", "nightly"), ("task", "backup")) in edges
    assert dashboard.runs_by_status_since(store.conn, RECENT) == {"succeeded": 1}


def test_the_cli_works_on_either_backend(db_target, run_cli, write_rules):
    """``--db`` takes the SQLite path or a postgresql:// URL; the configuration, log and
    dashboard-backed commands read and write through the same store functions."""
    path = write_rules(RULES)
    applied = run_cli("--db", db_target, "apply", path)
    assert applied.exit_code == 0, applied.output
    assert "5 created" in applied.stderr
    assert run_cli("--db", db_target, "tasks", "disable", "greet").exit_code == 0
    listed = json.loads(run_cli("--db", db_target, "tasks", "list", "--json").stdout)
    assert {t["name"]: t["enabled"] for t in listed} == {"backup": True, "greet": False}
    trail = json.loads(run_cli("--db", db_target, "audit", "--json").stdout)
    assert [(r["action"], r["kind"], r["name"]) for r in trail][:2] == [("disabled", "task", "greet"),
                                                                         ("created", "setting", "timezone")]
    upcoming = run_cli("--db", db_target, "schedules", "next", "nightly", "--count", "1",
                       "--after", "2026-05-31T12:00Z")
    assert upcoming.stdout.strip() == "2026-06-01T02:00:00+02:00  (2026-06-01T00:00:00Z)"
    emitted = run_cli("--db", db_target, "emit", "user.login", "user=alice", "--id", "x1")
    again = run_cli("--db", db_target, "emit", "user.login", "user=alice", "--id", "x1")
    assert f"duplicate of event {emitted.stdout.strip()}" in again.stderr
    explained = run_cli("--db", db_target, "logs", "explain", emitted.stdout.strip())
    assert explained.exit_code == 0 and "login" in explained.stdout
    assert run_cli("--db", db_target, "logs", "list").exit_code == 0
    graph = run_cli("--db", db_target, "graph")
    assert graph.exit_code == 0 and "nightly" in graph.stdout


def test_an_apply_waits_for_another_config_writer_then_diffs_what_it_wrote(postgres_url, config_of):
    """Two writers on one PostgreSQL: ``apply`` diffs only once the other has committed, so an
    object the other created meanwhile is still deleted when the files do not define it."""
    import threading
    import time

    first, second = open_store(postgres_url), open_store(postgres_url)
    apply_config(first, config_of(RULES))
    config, done = config_of(RULES.replace("echo, hi", "echo, hey")), []
    with first.write() as db:
        stored.lock_for_change(db.conn)
        stored.upsert_objects(db.conn, "task", [("late", '{"action": "command.run"}', True, "", None,
                                                 "command.run")], RECENT)
        worker = threading.Thread(target=lambda: done.append(apply_config(second, config)))
        worker.start()
        for _ in range(500):  # until the apply waits for this transaction's lock
            waiting = first.conn.raw.cursor().execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted").fetchone()[0]
            if waiting:
                break
            time.sleep(0.01)
        assert waiting, "the second apply never waited for the first writer"
    worker.join(30)
    assert sorted((c.action, c.name) for c in done[0].changes) == [("deleted", "late"), ("updated", "greet")]
    assert {t["name"] for t in list_tasks(first)} == {"backup", "greet"}
    first.close()
    second.close()


def test_the_cli_names_a_database_it_cannot_use(run_cli):
    unreachable = run_cli("--db", "postgresql://ops:s3cret@127.0.0.1:1/te", "logs", "list")
    assert unreachable.exit_code == 1
    assert "cannot connect to PostgreSQL at postgresql://ops:***@127.0.0.1:1/te" in unreachable.stderr
    assert "s3cret" not in unreachable.output
    other = run_cli("--db", "mysql://ops@db/te", "tasks", "list")
    assert other.exit_code == 1 and "database URL scheme 'mysql' is not supported" in other.stderr
