"""Where event sources run when several engines share one database: a ``one_node`` source on
the engine holding its lease only, moving to another engine when that one stops; an
``every_node`` source on each engine. On SQLite and on PostgreSQL."""

from __future__ import annotations

import threading
import time

import pytest

from taskengine_core.errors import RegistrationError
from taskengine_core.hookspecs import hookimpl
from taskengine_core.plugins import get_plugin_manager
from taskengine_core.registry import PluginInfo, Registry

RUNNING: dict[str, set] = {"poller": set(), "local": set()}
_lock = threading.Lock()


def _source(kind):
    def run(ctx):
        me = ctx.settings["engine"]
        with _lock:
            RUNNING[kind].add(me)
        ctx.stopping.wait()
        with _lock:
            RUNNING[kind].discard(me)
    return run


class Sources:
    __name__ = "cluster-sources"

    @hookimpl
    def register_triggers(self, register):
        register("poller", _source("poller"), schema={"type": "object"}, runs_on="one_node")
        register("local", _source("local"), schema={"type": "object"})


def _wait_for(condition, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def engines(db_target, monkeypatch):
    monkeypatch.setenv("TASKENGINE_LEASE_SECONDS", "1")
    from taskengine_core.engine import Engine

    made = []

    def make(name):
        engine = Engine(db_target, manager=get_plugin_manager(extra_plugins=[Sources()]), wake_listener=False)
        # each engine's sources see their own engine's name (settings resolved at start)
        engine.runtime.settings.update({"poller": {"engine": name}, "local": {"engine": name}})
        engine.start()
        made.append(engine)
        return engine

    yield make
    for engine in made:
        engine.stop(1)
    RUNNING["poller"].clear()
    RUNNING["local"].clear()


def test_a_one_node_source_runs_on_one_engine_and_moves_when_it_stops(engines):
    a, b, c = engines("a"), engines("b"), engines("c")
    assert _wait_for(lambda: len(RUNNING["local"]) == 3)  # every_node: on each engine
    assert _wait_for(lambda: len(RUNNING["poller"]) == 1)
    time.sleep(1.5)  # renewals come and go: still one copy
    assert len(RUNNING["poller"]) == 1
    holder = next(iter(RUNNING["poller"]))
    {"a": a, "b": b, "c": c}[holder].stop(1)
    assert _wait_for(lambda: len(RUNNING["poller"]) == 1 and holder not in RUNNING["poller"])
    assert len(RUNNING["poller"]) == 1


def test_runs_on_is_checked_at_registration():
    registry = Registry()
    register = registry.callable_registrar("trigger", PluginInfo("p", "p", "1"))
    with pytest.raises(RegistrationError, match="runs_on='everywhere' is not known"):
        register("x", lambda ctx: None, runs_on="everywhere")
    register("y", lambda ctx: None, runs_on="one_node")
    assert registry.triggers["y"].as_dict()["runs_on"] == "one_node"


def test_plugins_json_says_where_each_source_runs(run_cli):
    import json

    rows = {row["name"]: row for row in json.loads(run_cli("plugins", "--json").stdout)}
    assert rows["vm"]["runs_on"] == {"vm": "one_node"}
    assert rows["logwatch"]["runs_on"] == {"logwatch": "every_node"}


def test_each_engine_reports_a_heartbeat_and_leaves_at_a_clean_stop(engines, db_target):
    from taskengine_core.store import leases, open_store

    a, b = engines("a"), engines("b")
    store = open_store(db_target)
    assert _wait_for(lambda: {n["id"] for n in leases.nodes(store.conn)} == {a.executor.owner, b.executor.owner})
    a.stop(1)
    assert {n["id"] for n in leases.nodes(store.conn)} == {b.executor.owner}
