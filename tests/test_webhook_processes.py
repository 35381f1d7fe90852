"""``settings.webhook.processes``: the delivery dispatcher in processes of its own, supervised by
the engine (:mod:`taskengine_core.plugin_processes`, :mod:`taskengine_webhook.placement`).

Real child processes, a real HTTP receiver on 127.0.0.1, the engine's real SQLite file."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading

import pytest

from taskengine_core.events import Event
from tests.test_webhook_support import (  # noqa: F401 (fixtures)
    Reply, deliveries, engine, env_secret, new_secret, query, receiver, verify, wait_until,
    webhook_rules)

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux processes")


def processes_rules(url: str, processes: int, *, extra: str = "", retries: str = "") -> str:
    settings = f"settings:\n  webhook: {{backoff: 0.05, max_backoff: 1, processes: {processes}}}\n"
    rules = webhook_rules(url, extra=extra, settings=settings)
    return rules.replace(f"    url: {url}\n", f"    url: {url}\n{retries}", 1) + """
events:
  ping: {on: test.ping, tasks: [notify]}
"""


def failure_told_rules(hook_url: str, audit_url: str) -> str:
    """Deliveries to ``hook`` from a dispatcher process; its ``webhook.failed`` events are sent
    on to ``audit`` by the engine's rules."""
    return f"""
settings:
  webhook: {{processes: 1}}
webhooks:
  hook: {{url: "{hook_url}"}}
  audit: {{url: "{audit_url}"}}
tasks:
  notify: {{action: webhook.send, with: {{webhook: hook}}}}
  tell: {{action: webhook.send, with: {{webhook: audit}}}}
events:
  ping: {{on: test.ping, tasks: [notify]}}
  failed: {{on: webhook.failed, tasks: [tell]}}
"""


def body(request) -> dict:
    return json.loads(request.body)


def placement_of(e):
    from taskengine_webhook.running import _running

    return _running[id(e.info)]


def dispatcher_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name == "taskengine-webhooks"]


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


def test_deliveries_go_out_from_a_process_of_its_own(applied, engine, receiver, db_path):
    server = receiver()
    applied(processes_rules(server.url, 1))
    e = engine()
    placement = placement_of(e)
    [child] = placement.children
    assert placement.local is None and dispatcher_threads() == []  # none in the engine's process
    assert child.pid not in (None, os.getpid()) and alive(child.pid)
    e.emit_many([Event("test.ping", {"n": i}) for i in range(20)])
    server.wait_for(20)
    wait_until(lambda: {r["status"] for r in deliveries(db_path)} == {"delivered"})
    rows = deliveries(db_path)
    assert len(rows) == 20
    owners = {r["owner"] for r in query(db_path, "SELECT lease_owner AS owner FROM webhook_deliveries")}
    assert owners <= {None}  # leases are let go once delivered
    assert sorted(int(body(r)["event"]["data"]["n"]) for r in server.requests) == list(range(20))


def test_the_childs_signature_and_secret_come_from_the_engines_environment(
        applied, engine, receiver, db_path, monkeypatch):
    secret = new_secret()
    env_secret(monkeypatch, "HOOK_SECRET", secret)
    server = receiver()
    applied(processes_rules(server.url, 1, retries="    secret: ${env:HOOK_SECRET}\n"))
    e = engine()
    e.emit("test.ping", {"n": 1})
    [req] = server.wait_for(1)
    assert verify(secret, req)["event"]["data"] == {"n": 1}
    text = open(db_path, "rb").read()
    assert secret.encode() not in text  # the resolved secret never reaches the database


def test_the_database_url_never_reaches_the_childs_command_line(applied, engine, receiver, db_path):
    server = receiver()
    applied(processes_rules(server.url, 1))
    e = engine()
    [child] = placement_of(e).children
    with open(f"/proc/{child.pid}/cmdline", "rb") as f:
        argv = f.read().split(b"\0")
    assert str(db_path).encode() not in b" ".join(argv)
    assert argv[1:4] == [b"-P", b"-m", b"taskengine_core.plugin_process_main"]


def test_a_killed_dispatcher_process_is_started_again_and_its_deliveries_go_out(
        applied, engine, receiver, db_path, caplog):
    slow = receiver([Reply(200, delay=0.5)] * 3 + [Reply(200)] * 100)
    applied(processes_rules(slow.url, 1))
    e = engine()
    [child] = placement_of(e).children
    first = child.pid
    e.emit_many([Event("test.ping", {"n": i}) for i in range(3)])
    slow.wait_for(3)  # all three in flight, in the child, when it is killed
    with caplog.at_level(logging.WARNING, logger="taskengine.processes"):
        os.kill(first, signal.SIGKILL)
        wait_until(lambda: child.pid not in (None, first), timeout=15, what="a new dispatcher process")
    assert child.starts == 2 and child.last_exit == -signal.SIGKILL
    assert f"webhook-dispatcher-1 (pid {first}) was killed by signal 9 while the engine runs" in caplog.text
    # the new process recovers what the dead one held (its process is gone) and sends it again
    wait_until(lambda: {r["status"] for r in deliveries(db_path)} == {"delivered"}, timeout=20)
    assert len(deliveries(db_path)) == 3
    assert sorted({body(r)["event"]["data"]["n"] for r in slow.requests}) == [0, 1, 2]


def test_engine_stop_stops_the_processes_and_gives_back_what_they_held(
        applied, receiver, db_path):
    from taskengine_core.engine import Engine

    stuck = receiver([Reply(200, delay=30)] * 5)
    applied(processes_rules(stuck.url, 1))
    e = Engine(db_path, poll_interval=0.05)
    e.start()
    [child] = placement_of(e).children
    pid = child.pid
    e.emit_many([Event("test.ping", {"n": i}) for i in range(2)])
    stuck.wait_for(2)
    e.stop(grace=1)
    assert not alive(pid)
    assert child.last_exit == 0  # it stopped on its own (end of input), not killed
    rows = deliveries(db_path)
    assert [r["status"] for r in rows] == ["pending", "pending"]  # given back, to send later
    assert [r["attempts"] for r in rows] == [0, 0]


def test_a_dead_engine_takes_its_dispatcher_processes_with_it(tmp_path, receiver):
    """SIGKILL on ``taskengine run``: its children read end of input and stop by themselves."""
    server = receiver()
    rules = tmp_path / "rules.yaml"
    rules.write_text(processes_rules(server.url, 1))
    db = tmp_path / "engine.db"
    proc = subprocess.Popen([sys.executable, "-m", "taskengine_core", "--db", str(db), "run",
                             "--rules", str(rules)], stderr=subprocess.PIPE, text=True)
    try:
        children = []

        def child_started():
            children[:] = [int(p) for p in _children_of(proc.pid)]
            return children

        wait_until(child_started, timeout=30, what="the dispatcher process")
        proc.kill()
        proc.wait()
        wait_until(lambda: not any(alive(p) for p in children), timeout=15,
                   what="the orphaned dispatcher to stop")
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()


def _children_of(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return f.read().split()
    except FileNotFoundError:
        return []


def test_apply_moves_the_dispatcher_while_the_engine_runs(applied, engine, receiver, db_path):
    server = receiver()
    applied(processes_rules(server.url, 0))
    e = engine()
    placement = placement_of(e)
    assert placement.local is not None and placement.children == []
    applied(processes_rules(server.url, 2))
    wait_until(lambda: len(placement.children) == 2 and placement.local is None, timeout=15,
               what="two dispatcher processes")
    assert dispatcher_threads() == []
    pids = [c.pid for c in placement.children]
    e.emit_many([Event("test.ping", {"n": i}) for i in range(10)])
    server.wait_for(10)
    applied(processes_rules(server.url, 0))
    wait_until(lambda: placement.local is not None and placement.children == [], timeout=15,
               what="the dispatcher back in the engine's process")
    wait_until(lambda: not any(alive(p) for p in pids), what="the processes to stop")
    e.emit("test.ping", {"n": 10})
    server.wait_for(11)
    wait_until(lambda: {r["status"] for r in deliveries(db_path)} == {"delivered"})


def test_a_failed_delivery_event_from_the_child_reaches_the_engines_rules(
        applied, engine, receiver, db_path):
    gone, audit = receiver([Reply(410)]), receiver()
    applied(failure_told_rules(gone.url, audit.url))
    e = engine()
    e.emit("test.ping", {"n": 1})
    [told] = audit.wait_for(1)
    event = body(told)["event"]
    assert event["type"] == "webhook.failed"
    assert event["data"]["webhook"] == "hook" and event["data"]["status_code"] == 410
    [stored] = query(db_path, "SELECT source FROM events WHERE id = ?", (event["id"],))
    assert stored["source"] == "webhook"


@pytest.mark.parametrize("value, message", [
    (-1, "expected a number at least 0, got an integer -1"),
    (65, "expected a number at most 64, got an integer 65"),
    ("two", "expected an integer, got a string 'two'"),
])
def test_a_bad_processes_setting_is_refused_and_nothing_is_applied(run_cli, tmp_path, db_path,
                                                                    value, message):
    rules = tmp_path / "rules.yaml"
    rules.write_text(processes_rules("http://127.0.0.1:9/", 2))
    assert run_cli("--db", db_path, "apply", rules).exit_code == 0
    rules.write_text(processes_rules("http://127.0.0.1:9/", value))
    result = run_cli("--db", db_path, "apply", rules)
    assert result.exit_code == 1
    assert f"rules.yaml:3:44  settings.webhook.processes  {message}" in result.stderr
    stored = query(db_path, "SELECT spec FROM settings WHERE name = 'webhook'")
    assert json.loads(stored[0]["spec"])["processes"] == 2  # the applied configuration stands


def test_the_dispatcher_processes_are_stopped_together_not_one_after_another(
        applied, engine, receiver, db_path):
    """Each process has a request in flight to a receiver that never answers, so each takes the
    dispatcher's grace to stop: all are asked at once, or the engine's stop takes N graces."""
    stuck = receiver([Reply(200, delay=30)] * 50)
    applied(processes_rules(stuck.url, 2).replace("processes: 2", "processes: 2, concurrency: 1"))
    e = engine()
    children = list(placement_of(e).children)
    pids = [c.pid for c in children]
    e.emit_many([Event("test.ping", {"n": i}) for i in range(12)])
    stuck.wait_for(2)  # one in flight in each process (concurrency 1)
    stopper = threading.Thread(target=e.stop, kwargs={"grace": 1})
    stopper.start()
    try:
        wait_until(lambda: all(c.stopped for c in children), timeout=30, what="both asked to stop")
        assert all(alive(pid) for pid in pids)  # the second was asked while the first still stopped
    finally:
        stopper.join()
    assert not any(alive(pid) for pid in pids)
    assert {r["status"] for r in deliveries(db_path)} == {"pending"}  # all given back


def test_a_dispatcher_process_that_cannot_be_started_is_tried_again(
        applied, engine, receiver, db_path, monkeypatch, caplog):
    """The move to processes of their own fails to start a child (no interpreter at
    sys.executable here; out of processes or file descriptors in real life): the dispatcher
    in the engine's process is gone by then, so the engine must try again, not give up."""
    server = receiver()
    applied(processes_rules(server.url, 0))
    e = engine()
    placement = placement_of(e)
    real = sys.executable
    monkeypatch.setattr(sys, "executable", str(db_path) + ".no-such-python")
    with caplog.at_level(logging.ERROR, logger="taskengine.processes"):
        applied(processes_rules(server.url, 1))
        wait_until(lambda: placement.local is None, timeout=15, what="the move")
        wait_until(lambda: placement.processes == 1, timeout=5, what="the move to be done")
    from taskengine_core.health import HealthCheck

    [shown] = HealthCheck(e).report()[1]["processes"]
    assert shown == {"name": "webhook-dispatcher-1", "pid": None, "restarts": 0, "last_exit": None}
    monkeypatch.setattr(sys, "executable", real)
    assert "webhook-dispatcher-1 could not be started: [Errno 2] No such file or directory" in caplog.text
    e.emit("test.ping", {"n": 1})
    server.wait_for(1, timeout=20)
    [child] = placement.children
    assert alive(child.pid) and placement.local is None


def test_no_thread_for_a_processs_watcher_leaves_no_child_and_is_tried_again(
        applied, engine, receiver, db_path, monkeypatch, caplog):
    """The system gives no more threads (as root here it always does, so the first watcher's
    start is made to fail): the child just started was left running with no one watching it,
    and the placement's thread died, so the setting was never read again. Now that child is
    stopped, and the next check starts the process again."""
    from taskengine_core import plugin_processes

    started: list[subprocess.Popen] = []

    class Recorded(subprocess.Popen):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            started.append(self)

    monkeypatch.setattr(plugin_processes.subprocess, "Popen", Recorded)
    real_start, failed = threading.Thread.start, []

    def start(thread):
        if thread.name.endswith("-watch") and not failed:
            failed.append(thread.name)
            raise RuntimeError("can't start new thread")
        real_start(thread)

    monkeypatch.setattr(threading.Thread, "start", start)
    server = receiver()
    applied(processes_rules(server.url, 1))
    with caplog.at_level(logging.ERROR, logger="taskengine.webhook"):
        e = engine()
        placement = placement_of(e)
        assert failed == ["taskengine-webhook-dispatcher-1-watch"]
        assert started and started[0].wait(15) is not None  # stopped, not left unsupervised
        e.emit("test.ping", {"n": 1})
        server.wait_for(1, timeout=20)
    assert "webhook dispatcher process 1 could not be started: can't start new thread; " \
           "trying again in 1s" in caplog.text
    [child] = placement.children
    assert placement.processes == 1 and alive(child.pid) and child.pid != started[0].pid
    wait_until(lambda: [r["status"] for r in deliveries(db_path)] == ["delivered"], timeout=20,
               what="the delivery recorded as delivered")  # the request comes before its record


def test_on_postgresql_the_processes_deliver_and_recover_and_the_password_stays_hidden(
        postgres_url, write_rules, receiver, capfd):
    """The child gets the URL (with its password) through its standard input: never in its
    command line or the log; a killed child's deliveries go out from the next one."""
    from taskengine_core.apply import apply_config
    from taskengine_core.engine import Engine
    from taskengine_core.plugins import get_plugin_manager
    from taskengine_core.rules.validate import load_config
    from taskengine_core.store import open_store
    from tests.backends import rows

    url = postgres_url.replace("postgresql://postgres@", "postgresql://postgres:pw-Kq93xZ@")
    slow = receiver([Reply(200, delay=0.5)] * 3 + [Reply(200)] * 100)
    store = open_store(url)
    try:
        apply_config(store, load_config([write_rules(processes_rules(slow.url, 2))],
                                        get_plugin_manager().registry()))
    finally:
        store.close()
    e = Engine(url, poll_interval=0.05)
    e.start()
    try:
        children = placement_of(e).children
        for child in children:
            with open(f"/proc/{child.pid}/cmdline", "rb") as f:
                assert b"pw-Kq93xZ" not in f.read()
        e.emit_many([Event("test.ping", {"n": i}) for i in range(3)])
        slow.wait_for(3)
        for child in children:
            os.kill(child.pid, signal.SIGKILL)
        wait_until(lambda: {r["status"] for r in rows(url, "SELECT status FROM webhook_deliveries")}
                   == {"delivered"}, timeout=30, what="every delivery to go out")
    finally:
        e.stop(grace=2)
    assert sorted({body(r)["event"]["data"]["n"] for r in slow.requests}) == [0, 1, 2]
    assert "pw-Kq93xZ" not in capfd.readouterr().err
