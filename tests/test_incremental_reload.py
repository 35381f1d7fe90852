"""Reloading the configuration: only what changed is read and compiled again (issue 9), and the
result is always the same as loading everything afresh."""

from __future__ import annotations

import random

import pytest

from taskengine_core.apply import apply_config
from taskengine_core.catalog import set_enabled
from taskengine_core.model import load_runtime, refresh_runtime
from taskengine_core.plugins import get_plugin_manager
from taskengine_core.rules.validate import load_config
from taskengine_core.store import open_store
from tests.backends import db_path, one, rows  # noqa: F401  (every test on SQLite and on PostgreSQL)


def rules_text(n_rules=50, when=None, extra=""):
    lines = ["settings:", "  timezone: UTC", "tasks:"]
    lines += [f"  t{i}: {{action: command.run, with: {{argv: [echo, '{i}']}}}}" for i in range(10)]
    lines.append("events:")
    for i in range(n_rules):
        cond = (when or {}).get(i, f"{{data.user: u{i}}}")
        lines.append(f"  r{i}: {{on: type-{i % 7}, when: {cond}, tasks: [t{i % 10}]}}")
    lines.append("  any-job: {on: 'job.*', tasks: [t1, t2]}")
    return "\n".join(lines) + "\n" + extra


@pytest.fixture
def setup(tmp_path, db_path):
    registry = get_plugin_manager().registry()
    store = open_store(db_path)
    path = tmp_path / "rules.yaml"

    def apply(text):
        path.write_text(text)
        apply_config(store, load_config([path], registry))

    apply(rules_text())
    yield store, apply
    store.close()


def events():
    out = [{"id": f"e{n}", "type": f"type-{n % 7}", "source": "t", "time": "2026-01-01T00:00:00Z",
            "data": {"user": f"u{n}"}} for n in range(60)]
    out += [{"id": "j", "type": "job.5", "source": "t", "time": "2026-01-01T00:00:00Z", "data": {}}]
    return out


def same(a, b):
    """Two runtimes agree on everything the engine uses."""
    assert a.generation == b.generation
    assert a.tasks == b.tasks
    assert a.settings == b.settings
    assert [r.name for r in a.rules.rules] == [r.name for r in b.rules.rules]
    assert [r.payload for r in a.rules.rules] == [r.payload for r in b.rules.rules]
    for event in events():
        assert [r.name for r in a.rules.match(event)] == [r.name for r in b.rules.match(event)], event
        assert a.listens(event["type"]) == b.listens(event["type"])
    for event in events()[:10]:
        assert [(r.name, m, why) for r, m, why in a.rules.explain(event)] == \
               [(r.name, m, why) for r, m, why in b.rules.explain(event)]


def test_unchanged_configuration_is_the_same_runtime(setup):
    store, _ = setup
    runtime = load_runtime(store)
    assert refresh_runtime(store, runtime) is runtime


def test_a_task_toggle_reloads_that_task_only(setup):
    store, _ = setup
    runtime = load_runtime(store)
    set_enabled(store, "task", "t3", False)
    fresh = refresh_runtime(store, runtime)
    assert fresh is not runtime and fresh.tasks["t3"].enabled is False
    assert fresh.rules is runtime.rules  # no rule was compiled again
    assert all(fresh.tasks[n] is runtime.tasks[n] for n in runtime.tasks if n != "t3")
    assert runtime.tasks["t3"].enabled is True  # the old snapshot stays as it was
    same(fresh, load_runtime(store))


def test_a_retired_task_and_a_gone_webhook_reload_without_a_rebuild(setup):
    from taskengine_core.runs import retire

    store, _ = setup
    runtime = load_runtime(store)
    with store.write() as db:
        retire(db.conn, ["t4"], "2026-01-01T00:00:00Z")
    fresh = refresh_runtime(store, runtime)
    assert fresh.tasks["t4"].retired and fresh.rules is runtime.rules
    same(fresh, load_runtime(store))
    with store.write() as db:  # a webhook that answered 410 is disabled by the dispatcher
        from datetime import datetime, timezone

        from plugins.webhook.store import disable

        db.conn.execute("INSERT INTO webhooks (name, spec, created_at, updated_at) VALUES "
                        "('hook', '{\"url\": \"http://127.0.0.1:9/\"}', 't', 't')")
        assert disable(db.conn, "hook", "answered 410 Gone", datetime.now(timezone.utc))
    after_410 = refresh_runtime(store, fresh)
    assert after_410.generation > fresh.generation
    assert after_410.rules is fresh.rules and after_410.tasks is fresh.tasks
    same(after_410, load_runtime(store))


def test_a_changed_rule_rebuilds_only_the_buckets_of_its_types(setup):
    store, apply = setup
    runtime = load_runtime(store)
    apply(rules_text(when={3: "{data.user: someone-else}"}))
    fresh = refresh_runtime(store, runtime)
    assert fresh.rules is not runtime.rules
    assert fresh.rules._exact["type-3"] is not runtime.rules._exact["type-3"]  # r3 listens there
    assert fresh.rules._exact["type-4"] is runtime.rules._exact["type-4"]  # untouched, shared
    old = {r.name: r for r in runtime.rules.rules}
    assert [r.name for r in fresh.rules.rules if r is not old.get(r.name)] == ["r3"]
    same(fresh, load_runtime(store))
    evt = {"id": "x", "type": "type-3", "source": "t", "time": "t", "data": {"user": "someone-else"}}
    assert [r.name for r in fresh.rules.match(evt)] == ["r3"]
    assert runtime.rules.match(evt) == []  # the engine's old snapshot is untouched


def test_added_deleted_relinked_rules_and_settings(setup):
    store, apply = setup
    runtime = load_runtime(store)
    text = rules_text(n_rules=45).replace("timezone: UTC", "timezone: Europe/Berlin")
    text = text.replace("tasks: [t1, t2]", "tasks: [t2, t3]")
    text += "  new-glob: {on: 'type-*', when: {data.user: u1}, tasks: [t5]}\n"
    apply(text)
    fresh = refresh_runtime(store, runtime)
    assert fresh.settings["timezone"] == "Europe/Berlin"
    assert "r46" not in {r.name for r in fresh.rules.rules}
    same(fresh, load_runtime(store))


def test_a_change_log_pruned_past_the_engine_reloads_everything(setup):
    from taskengine_core import model

    store, apply = setup
    runtime = load_runtime(store)
    set_enabled(store, "task", "t1", False)
    with store.write() as db:
        db.conn.execute("UPDATE meta SET value = '999999' WHERE key = 'config_changes_pruned_through'")
    fresh = refresh_runtime(store, runtime)
    assert fresh.rules is not runtime.rules  # rebuilt from scratch
    same(fresh, load_runtime(store))
    assert model.prune_config_changes(store.conn, 10) is False  # under the kept count: nothing


def test_the_change_log_is_pruned_in_batches(setup, monkeypatch):
    from taskengine_core import model

    store, _ = setup
    monkeypatch.setattr(model, "CONFIG_CHANGES_KEPT", 5)
    runtime = load_runtime(store)
    total = store.conn.execute("SELECT count(*) FROM config_changes").fetchone()[0]
    assert total > 20
    with store.write() as db:
        assert model.prune_config_changes(db.conn, 10) is True
    with store.write() as db:
        while model.prune_config_changes(db.conn, 10):
            pass
    assert store.conn.execute("SELECT count(*) FROM config_changes").fetchone()[0] == 5
    set_enabled(store, "task", "t1", False)
    fresh = refresh_runtime(store, runtime)  # the engine had not read past the pruned rows
    same(fresh, load_runtime(store))


def test_random_changes_always_agree_with_a_full_load(setup):
    store, apply = setup
    rng = random.Random(9)
    runtime = load_runtime(store)
    for _ in range(15):
        n = rng.randrange(30, 60)
        when = {i: f"{{data.user: u{rng.randrange(60)}}}" for i in rng.sample(range(n), 5)}
        apply(rules_text(n_rules=n, when=when))
        for _ in range(rng.randrange(3)):
            kind, name = rng.choice([("task", "t1"), ("event", "r2"), ("event", "r5"), ("task", "t7")])
            set_enabled(store, kind, name, rng.random() < 0.5)
        runtime = refresh_runtime(store, runtime)
        same(runtime, load_runtime(store))


def test_every_writer_is_logged_by_the_triggers(setup, db_path):
    store, _ = setup
    seq = one(db_path, "SELECT max(seq) FROM config_changes")[0]
    with store.write() as db:
        db.conn.execute("UPDATE tasks SET enabled = 0 WHERE name = 't9'")
        db.conn.execute("DELETE FROM event_rules WHERE name = 'r0'")  # links go by cascade
        db.conn.execute("UPDATE settings SET spec = '\"UTC\"' WHERE name = 'timezone'")
    logged = {(r["kind"], r["name"]) for r in rows(db_path, "SELECT kind, name FROM config_changes WHERE seq > ?", (seq,))}
    assert logged == {("task", "t9"), ("event", "r0"), ("setting", "timezone")}


def test_logs_explain_compiles_only_the_rules_of_the_events_type(setup, monkeypatch):
    """``logs explain`` answers for every rule, but compiles conditions only where the type
    matches (it used to build the whole runtime on every call); the answer is the same."""
    from taskengine_core import conditions
    from taskengine_core.task_logs import explain_event

    store, _ = setup
    with store.write() as db:
        db.conn.execute("INSERT INTO events (id, type, source, data, time, received_at) VALUES "
                        "('ev', 'type-3', 'test', '{\"user\": \"u3\"}', 't', 't')")
    full = load_runtime(store)
    compiled = []
    real = conditions.compile_conditions
    monkeypatch.setattr(conditions, "compile_conditions", lambda when: compiled.append(when) or real(when))
    answer = explain_event(store, "ev")
    matching = [r.name for r in full.rules.rules if "type-3" in r.on]
    assert len([w for w in compiled if w]) == len(matching)  # r3, r10, r17, ... only
    event = {"id": "ev", "type": "type-3", "source": "test", "time": "t", "data": {"user": "u3"}}
    expected = [(r.name, m) for r, m, _ in full.rules.explain(event)]
    assert [(r["rule"], r["matched"]) for r in answer["rules_now"]] == expected
    assert {r["rule"]: r["reason"] for r in answer["rules_now"]}["r3"] == "matched (tasks t3: enabled)"
    assert {r["rule"]: r["reason"] for r in answer["rules_now"]}["r4"] == \
        "type 'type-3' does not match 'type-4'"
