"""Tests of the plugin through taskengine's real plugin manager, rule loader and engine."""

from __future__ import annotations

import importlib.metadata
import textwrap

import pytest

import taskengine_myplugin
from taskengine_core.apply import apply_config
from taskengine_core.engine import Engine
from taskengine_core.plugins import get_plugin_manager
from taskengine_core.rules.validate import check_paths, load_config
from taskengine_core.store import Store
from taskengine_core.task_logs import show_run

RULES = """
settings:
  myplugin: {greeting: Welcome}
tasks:
  greet:
    action: myplugin.hello
    with: {name: "{{ event.data.user }}"}
events:
  login: {on: user.login, tasks: [greet]}
"""


@pytest.fixture
def manager():
    # load_entry_points=False: the test works whether or not the package is installed, and an
    # installed copy cannot register the same action a second time.
    return get_plugin_manager(extra_plugins=[taskengine_myplugin], load_entry_points=False)


@pytest.fixture
def rules(tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text(textwrap.dedent(RULES))
    return path


def test_register_actions_provides_the_action_with_its_schema(manager):
    item = manager.registry().actions["myplugin.hello"]
    assert item.schema["required"] == ["name"]
    assert item.idempotent is True
    assert "myplugin" in manager.registry().settings


def test_rule_files_using_the_action_validate(manager, rules, tmp_path):
    _, problems = check_paths([rules], manager.registry())
    assert problems == []
    bad = tmp_path / "bad.yaml"
    bad.write_text("tasks:\n  t: {action: myplugin.hello, with: {nam: x}}\n")
    _, problems = check_paths([bad], manager.registry())
    assert any("name" in p.message for p in problems)


def test_an_event_runs_the_action_through_the_engine(manager, rules, tmp_path):
    db = tmp_path / "taskengine.db"
    store = Store(db)
    apply_config(store, load_config([rules], manager.registry()))
    store.close()
    engine = Engine(db, manager=manager, workers=1)
    engine.executor.start()
    try:
        event_id = engine.emit("user.login", {"user": "alice"})
        engine.run_until_idle(timeout=30)
    finally:
        engine.executor.stop(0)
    run_id = engine.store.conn.execute("SELECT id FROM runs WHERE event_id = ?", (event_id,)).fetchone()[0]
    run = show_run(engine.store, run_id)
    assert run["status"] == "succeeded"
    assert run["output"] == {"message": "Welcome, alice!"}


def test_empty_name_fails_without_retry(manager, tmp_path):
    db = tmp_path / "taskengine.db"
    rules = tmp_path / "rules.yaml"
    rules.write_text('tasks:\n  t: {action: myplugin.hello, with: {name: " "}, retry: {attempts: 3}}\n')
    store = Store(db)
    apply_config(store, load_config([rules], manager.registry()))
    store.close()
    engine = Engine(db, manager=manager, workers=1)
    run_id = engine.queue_run("t")
    engine.executor.start()
    try:
        status = engine.execute(run_id, timeout=30)
    finally:
        engine.executor.stop(0)
    run = show_run(engine.store, run_id)
    assert status == "failed" and len(run["attempts"]) == 1
    assert "empty" in run["error"]


def test_installed_package_is_found_through_its_entry_point():
    found = [ep for ep in importlib.metadata.entry_points(group="taskengine") if ep.name == "myplugin"]
    if not found:
        pytest.skip("taskengine-myplugin is not installed (pip install -e .)")
    item = get_plugin_manager().registry().actions["myplugin.hello"]
    assert item.plugin.distribution == "taskengine-myplugin"
