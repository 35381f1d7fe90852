"""Registration hooks go through pluggy's own call loop: ``wrapper=True`` implementations run
around the others and see (and may add to) what they register, each item credited to the
plugin that registered it; the first plugin registered keeps a name whatever the call order."""

from __future__ import annotations

import pytest

from taskengine_core.hookspecs import hookimpl
from taskengine_core.plugins import PluginLoadWarning, get_plugin_manager
from tests.backends import db_path  # noqa: F401  (the engine test on SQLite and on PostgreSQL)


class Plain:
    __name__ = "plain"

    @hookimpl
    def register_actions(self, register):
        register("plain.act", lambda params, ctx: None)


class Wrapping:
    """Registers one action before the others run and records what they returned."""

    __name__ = "wrapping"
    seen: list = []

    @hookimpl(wrapper=True)
    def register_actions(self, register):
        register("wrapping.before", lambda params, ctx: None)
        result = yield
        Wrapping.seen.append(result)
        register("wrapping.after", lambda params, ctx: None)
        return result


def test_register_actions_wrapper_implementations_run_and_are_credited():
    Wrapping.seen = []
    registry = get_plugin_manager(extra_plugins=[Plain(), Wrapping()]).registry()
    actions = registry.actions
    assert actions["wrapping.before"].plugin.name == "wrapping"
    assert actions["wrapping.after"].plugin.name == "wrapping"
    assert actions["plain.act"].plugin.name == "plain"
    assert actions["command.run"].plugin.name == "command"
    assert Wrapping.seen and all(r is None for r in Wrapping.seen[0])  # the others ran inside it


def test_a_failing_wrapper_is_reported_by_name():
    class Failing:
        __name__ = "failing"

        @hookimpl(wrapper=True)
        def register_actions(self, register):
            yield
            raise RuntimeError("wrapper broke")

    with pytest.warns(PluginLoadWarning) as caught:
        manager = get_plugin_manager(extra_plugins=[Failing()])
        manager.registry()
    assert any("plugin 'failing'" in str(w.message) and "RuntimeError: wrapper broke" in str(w.message)
               for w in caught)
    assert [b.name for b in manager.broken] == ["failing"]


def test_the_first_plugin_registered_keeps_a_name_though_pluggy_calls_it_last():
    class First:
        __name__ = "first"

        @hookimpl
        def register_actions(self, register):
            register("shared.act", lambda params, ctx: "first")

    class Second:
        __name__ = "second"

        @hookimpl
        def register_actions(self, register):
            register("shared.act", lambda params, ctx: "second")

    with pytest.warns(PluginLoadWarning) as caught:
        manager = get_plugin_manager(extra_plugins=[First(), Second()])
        registry = manager.registry()
    assert registry.actions["shared.act"].plugin.name == "first"
    # the first PluginLoadWarning: a ResourceWarning of an earlier test's connection, collected
    # meanwhile, may come first
    assert "action 'shared.act' from plugin second" in str(
        next(w.message for w in caught if issubclass(w.category, PluginLoadWarning)))
    assert [b.name for b in manager.broken] == ["second"]


class Finished:
    __name__ = "finished"
    calls: list = []

    @hookimpl
    def run_finished(self, run):
        Finished.calls.append((run.task, run.status))


def test_run_finished_fires_once_per_run_not_per_attempt(db_path):
    from taskengine_core.testing import Harness

    Finished.calls = []
    harness = Harness(db_path, plugins=[Finished()])
    try:
        harness.apply('tasks:\n  flaky: {action: command.run, with: {argv: ["false"]}, '
                      'retry: {attempts: 3, backoff: 0.01, jitter: false}}\n')
        run = harness.run_task("flaky")
    finally:
        harness.close()
    assert len(run["attempts"]) == 3
    assert Finished.calls == [("flaky", "failed")]
