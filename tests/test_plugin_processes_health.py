"""/healthz and plugin processes that keep exiting (tests/test_plugin_processes.py has the
entries these children run)."""

from __future__ import annotations

import sys
import time

import pytest

from taskengine_core import plugin_processes
from tests.test_plugin_processes import entries  # noqa: F401 (fixture)
from tests.test_webhook_support import wait_until

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux processes")


def test_healthz_keeps_failing_while_a_child_exits_each_time_it_is_started(entries, db_path,
                                                                           monkeypatch):
    """A child that exits right after each start (its entry cannot start) never does any work,
    but /healthz measured 'down' from its last exit only: each restart reset it, so with the
    restarts closer together than stall_after (or, with the real pauses, about half of the time)
    /healthz answered 200."""
    from taskengine_core.engine import Engine
    from taskengine_core.health import HealthCheck

    monkeypatch.setattr(plugin_processes, "FIRST_PAUSE", 0.1)
    monkeypatch.setattr(plugin_processes, "LONGEST_PAUSE", 0.2)
    engine = Engine(db_path)
    engine.start()
    try:
        failing = engine.info.start_process("te_child_entries:broken", name="failing")
        health = HealthCheck(engine, stall_after=1.5)
        wait_until(lambda: failing.last_exit is not None, timeout=20, what="the first exit")
        time.sleep(2.0)  # past stall_after since the first exit
        starts, answers = failing.starts, set()
        for _ in range(40):
            answers.add(health.report()[0])
            time.sleep(0.05)
        assert failing.starts > starts + 2  # it kept being started meanwhile
        assert answers == {503}
        status, body = health.report()
        [reason] = body["reasons"]
        assert reason.startswith("failing has not been running for ")
        assert reason.endswith("s (last exit code 2): see the engine's log")
    finally:
        engine.stop(grace=1)


def test_healthz_is_ok_again_once_a_restarted_child_keeps_running(entries, db_path, monkeypatch):
    import os
    import signal

    from taskengine_core.engine import Engine
    from taskengine_core.health import HealthCheck

    monkeypatch.setattr(plugin_processes, "FIRST_PAUSE", 0.1)
    monkeypatch.setattr(plugin_processes, "STEADY", 1.0, raising=False)
    engine = Engine(db_path)
    engine.start()
    try:
        working = engine.info.start_process("te_child_entries:recorder", name="working")
        wait_until(lambda: entries.notes(), what="the child to start")
        health = HealthCheck(engine, stall_after=30)
        assert health.report()[0] == 200
        os.kill(working.pid, signal.SIGKILL)
        wait_until(lambda: working.starts == 2 and working.pid is not None, what="the restart")
        assert health.report()[0] == 200  # down far less than stall_after
        time.sleep(1.2)
        assert working.down_for() is None and health.report()[0] == 200
    finally:
        engine.stop(grace=1)
