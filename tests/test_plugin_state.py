"""Durable state for plugins: sources and actions keep positions and sets across restarts,
through their context, without SQL or the database path."""

from __future__ import annotations

import threading

import pytest

from taskengine_core.engine import Engine
from taskengine_core.hookspecs import hookimpl
from taskengine_core.plugin_state import PluginState
from taskengine_core.plugins import get_plugin_manager
from taskengine_core.store import open_store
from tests.backends import db_path, dump, rows  # noqa: F401  (every test on SQLite and on PostgreSQL)


@pytest.fixture
def state(db_path):
    store = open_store(db_path)
    yield lambda scope: PluginState(lambda: store, scope)
    store.close()


def test_values_round_trip_as_json_and_scopes_are_apart(state):
    a, b = state("source:a"), state("source:b")
    a.set("pos", {"dev": 1, "ino": 2, "offset": 300, "head": "ab"})
    a.set("seen", ["x", "y"])
    assert a.get("pos") == {"dev": 1, "ino": 2, "offset": 300, "head": "ab"}
    assert b.get("pos") is None and b.get("pos", 0) == 0
    a.update({"pos": 5}, delete=["seen"])
    assert dict(a.items()) == {"pos": 5}


def test_items_by_prefix_reads_wildcards_literally(state):
    s = state("source:vm")
    s.update({"vm/a%": 1, "vm/ab": 2, "vmx": 3, "vm_": 4})
    assert dict(s.items("vm/")) == {"vm/a%": 1, "vm/ab": 2}
    assert dict(s.items("vm_")) == {"vm_": 4}


def test_bad_values_are_refused_and_nothing_is_written(state, db_path):
    s = state("actions:updates")
    s.set("ok", 1)
    before = dump(db_path)
    with pytest.raises(ValueError, match="JSON compliant|not JSON serializable|Out of range"):
        s.update({"a": 2, "b": float("nan")})
    with pytest.raises(TypeError):
        s.update({"a": 2, "b": object()})
    with pytest.raises(ValueError, match="state keys are non-empty strings"):
        s.set("", 1)
    with pytest.raises(ValueError, match="the limit is"):
        s.set("big", "x" * (2 << 20))
    assert dump(db_path) == before


class Counter:
    """A source that counts its own starts in durable state and emits in batches."""

    __name__ = "counter"

    @hookimpl
    def register_settings(self, register):
        register("counter", {"type": "object"})

    @hookimpl
    def register_triggers(self, register):
        def source(ctx):
            starts = ctx.state.get("starts", 0) + 1
            ctx.state.set("starts", starts)
            ctx.emit_many([{"type": "counter.started", "data": {"n": starts}, "id": f"start-{starts}"},
                           {"type": "counter.started", "data": {"n": starts}, "id": f"start-{starts}"}])
            Counter.done.set()
            ctx.stopping.wait(10)

        register("counter", source, schema={"type": "object"})

    done = threading.Event()


def test_a_source_keeps_its_state_across_engine_restarts(applied, db_path):
    manager = get_plugin_manager(extra_plugins=[Counter()])
    applied("settings: {counter: {}}\n", manager=manager)
    for expected in (1, 2):
        Counter.done.clear()
        engine = Engine(db_path, manager=get_plugin_manager(extra_plugins=[Counter()]))
        engine.start()
        try:
            assert Counter.done.wait(10)
        finally:
            engine.stop(grace=1)
        assert engine.source_state("counter").get("starts") == expected
    stored = rows(db_path, "SELECT source, source_id, CASE WHEN duplicate_of IS NULL THEN 0 ELSE 1 END AS dup, "
                           "data FROM events WHERE type = 'counter.started' ORDER BY seq")
    # the same id twice in one batch: the second is kept as a duplicate that runs nothing
    assert [(r["source"], r["source_id"], r["dup"]) for r in stored] == [
        ("counter", "start-1", 0), ("counter", "start-1", 1),
        ("counter", "start-2", 0), ("counter", "start-2", 1)]


def test_actions_get_state_scoped_to_their_plugin(plugin_engine_with_state):
    engine, seen = plugin_engine_with_state
    run_id = engine.queue_run("remember")
    assert engine.execute(run_id, timeout=10) == "succeeded"
    run_id = engine.queue_run("remember")
    assert engine.execute(run_id, timeout=10) == "succeeded"
    assert seen == [None, 1]
    assert PluginState(lambda: engine.store, "actions:memo").get("last") == 2


class Memo:
    __name__ = "memo"
    seen: list = []

    @hookimpl
    def register_actions(self, register):
        def remember(params, ctx):
            last = ctx.state.get("last")
            Memo.seen.append(last)
            ctx.state.set("last", (last or 0) + 1)
            return {"last": last}

        register("memo.remember", remember, schema={"type": "object"})


@pytest.fixture
def plugin_engine_with_state(applied, db_path):
    Memo.seen = []
    manager = get_plugin_manager(extra_plugins=[Memo()])
    applied("tasks: {remember: {action: memo.remember}}\n", manager=manager)
    engine = Engine(db_path, manager=manager)
    engine.executor.start()
    yield engine, Memo.seen
    engine.executor.stop(0)
