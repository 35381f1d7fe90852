"""Tests of the plugin through taskengine's real plugin manager, rule loader and engine, using
the ``taskengine`` fixture of taskengine's testing kit."""

from __future__ import annotations

import importlib.metadata

import pytest

from taskengine_core.errors import RuleFileError

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


def test_register_actions_provides_the_action_with_its_schema(taskengine):
    item = taskengine.registry.actions["myplugin.hello"]
    assert item.schema["required"] == ["name"]
    assert item.idempotent is True
    assert "myplugin" in taskengine.registry.settings


def test_rule_files_are_checked_against_the_schema(taskengine):
    taskengine.apply(RULES)
    with pytest.raises(RuleFileError) as caught:
        taskengine.apply("tasks:\n  t: {action: myplugin.hello, with: {nam: x}}\n", name="bad.yaml")
    assert any("name" in problem.message for problem in caught.value.problems)


def test_an_event_runs_the_action_through_the_engine(taskengine):
    taskengine.apply(RULES)
    [run] = taskengine.emit_and_run("user.login", user="alice")
    assert run["status"] == "succeeded"
    assert run["output"] == {"message": "Welcome, alice!"}


def test_empty_name_fails_without_retry(taskengine):
    taskengine.apply('tasks:\n  t: {action: myplugin.hello, with: {name: " "}, retry: {attempts: 3}}\n')
    run = taskengine.run_task("t")
    assert run["status"] == "failed" and len(run["attempts"]) == 1
    assert "empty" in run["error"]


def test_installed_package_is_found_through_its_entry_point(taskengine):
    found = [ep for ep in importlib.metadata.entry_points(group="taskengine") if ep.name == "myplugin"]
    if not found:
        pytest.skip("taskengine-myplugin is not installed (pip install -e .)")
    assert taskengine.registry.actions["myplugin.hello"].plugin.distribution == "taskengine-myplugin"
