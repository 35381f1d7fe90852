"""Waking a running engine when another process commits work (issue 9: polling)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest

from taskengine_core.engine import Engine
from taskengine_core.wakeup import SUPPORTED, WakeListener, poke
from tests.backends import db_path, one  # noqa: F401  (the engine tests on SQLite and on PostgreSQL)

pytestmark = pytest.mark.skipif(not SUPPORTED, reason="abstract unix sockets are Linux only")


def wait_for(predicate, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return False


def test_a_poke_reaches_every_listener_of_that_database_only(tmp_path):
    woken = {"a": threading.Event(), "b": threading.Event(), "other": threading.Event()}
    listeners = [WakeListener(tmp_path / "x.db", woken["a"].set),
                 WakeListener(tmp_path / "x.db", woken["b"].set),
                 WakeListener(tmp_path / "y.db", woken["other"].set)]
    try:
        assert all(listener.start() for listener in listeners)
        assert listeners[0].address != listeners[1].address  # two engines, two slots
        assert poke(tmp_path / "x.db") == 2
        assert woken["a"].wait(10) and woken["b"].wait(10)
        assert not woken["other"].is_set()
    finally:
        for listener in listeners:
            listener.stop()
    assert poke(tmp_path / "x.db") == 0  # nobody listens any more: nothing fails


def test_a_flood_of_pokes_is_coalesced(tmp_path):
    calls = []
    listener = WakeListener(tmp_path / "x.db", lambda: calls.append(1))
    assert listener.start()
    try:
        for _ in range(5000):
            poke(tmp_path / "x.db")
        assert wait_for(lambda: calls)
        time.sleep(0.2)
    finally:
        listener.stop()
    assert 1 <= len(calls) < 5000


def test_emit_from_another_process_starts_the_run_without_waiting_for_the_poll(applied, db_path):
    applied("""
        tasks:
          t: {action: command.run, with: {argv: ["true"]}}
        events:
          e: {on: go, tasks: [t]}
    """)
    engine = Engine(db_path, poll_interval=3600)  # only a wake-up can make it look
    engine.start()
    try:
        time.sleep(0.3)  # the loop has settled into its (hour-long) wait
        subprocess.run([sys.executable, "-m", "taskengine_core", "--db", str(db_path), "emit", "go"],
                       check=True, capture_output=True)
        assert wait_for(lambda: one(db_path, "SELECT count(*) FROM runs WHERE started_at IS NOT NULL")[0] == 1)
    finally:
        engine.stop(5)


def test_a_config_change_from_the_cli_is_picked_up_at_once(applied, run_cli, db_path):
    applied("""
        tasks:
          t: {action: command.run, with: {argv: ["true"]}}
    """)
    engine = Engine(db_path, poll_interval=3600)
    engine.start()
    try:
        time.sleep(0.3)
        assert run_cli("tasks", "disable", "t").exit_code == 0
        assert wait_for(lambda: engine.runtime.tasks["t"].enabled is False)
    finally:
        engine.stop(5)


def test_without_the_listener_the_engine_still_polls(applied, db_path):
    applied("""
        tasks:
          t: {action: command.run, with: {argv: ["true"]}}
        events:
          e: {on: go, tasks: [t]}
    """)
    engine = Engine(db_path, poll_interval=0.05, wake_listener=False)
    engine.start()
    try:
        other = Engine(db_path, wake_listener=False)
        other.emit("go")
        assert wait_for(lambda: one(db_path, "SELECT count(*) FROM runs WHERE started_at IS NOT NULL")[0] == 1)
    finally:
        engine.stop(5)


def test_on_postgresql_a_poke_by_url_or_by_store_wakes_every_listening_engine(postgres_url):
    import threading

    from taskengine_core.store import open_store
    from taskengine_core.wakeup import listener, poke

    store = open_store(postgres_url)
    woken = [threading.Event(), threading.Event()]
    listeners = [listener(postgres_url, event.set) for event in woken]
    try:
        assert all(item.start() for item in listeners)
        assert poke(postgres_url) == 1
        assert all(event.wait(10) for event in woken)
        for event in woken:
            event.clear()
        assert poke(store) == 1  # over the store's own connection: no new one
        assert all(event.wait(10) for event in woken)
    finally:
        for item in listeners:
            item.stop()
        store.close()
    assert poke("postgresql://nobody@127.0.0.1:1/none") == 0  # unreachable: no error, nobody told
