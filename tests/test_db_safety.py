"""The database file: deleted or replaced under a running engine, a full disk, a mistyped --db,
and another application's SQLite file. Real files, a real engine and ingress on 127.0.0.1."""

from __future__ import annotations

import logging
import os
import sqlite3
import time

import pytest
import requests

from taskengine_core.engine import Engine
from taskengine_core.loop_guard import LoopGuard
from tests.test_ingress import (  # noqa: F401 (fixtures)
    Server, server, start_server)


def healthz(server: Server) -> requests.Response:
    response = requests.get(f"{server.url}/healthz", timeout=10)
    server.bodies.append(response.content)
    return response


def wait_for(predicate, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.05)
    raise AssertionError("timed out")


# -- deleted or replaced while the engine runs --------------------------------------------------

@pytest.mark.parametrize("with_wal", [False, True], ids=["db-file", "db-wal-and-shm"])
def test_deleting_the_database_is_detected_and_events_are_refused(server, caplog, with_wal):
    caplog.set_level(logging.ERROR, "taskengine.engine")
    assert server.post({"type": "before"}).status_code == 202
    for suffix in ("", "-wal", "-shm") if with_wal else ("",):
        os.unlink(f"{server.db_path}{suffix}")
    response = server.post({"type": "after"})
    assert response.status_code == 503
    error = response.json()["error"]
    assert error.startswith(f"event not stored: database file {server.db_path} was deleted while "
                            "taskengine was using it")
    health = healthz(server)
    assert health.status_code == 503 and health.json()["status"] == "failing"
    assert health.json()["reasons"][0].startswith(f"database file {server.db_path} was deleted")
    # the engine loop says why it fails (the webhook dispatcher's pass may fail and log first)
    loop_records = lambda: [r for r in caplog.records if r.name == "taskengine.engine"]  # noqa: E731
    wait_for(lambda: any("was deleted" in r.getMessage() for r in loop_records()))
    assert loop_records()[0].getMessage().startswith(f"engine loop failed: database file {server.db_path} was deleted")
    assert not server.db_path.exists()  # nothing silently made a new, empty database


def test_the_webhook_dispatcher_logs_a_lost_database_once_not_every_poll(start_server, caplog):
    """A delivery keeps failing (the receiver answers 503) and the database file is deleted:
    the dispatcher's pass then fails at every poll. One line with the traceback, then backing
    off and a line a minute at most (as the engine loop does), not a traceback a second."""
    import http.server
    import threading

    hits = []

    class Down(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            hits.append(time.monotonic())
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    receiver = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Down)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    try:
        server = start_server(
            f"webhooks:\n  down: {{url: 'http://127.0.0.1:{receiver.server_port}/', retries: 20}}\n"
            "tasks:\n  push: {action: webhook.send, with: {webhook: down, payload: {n: 1}}}\n"
            "events:\n  pushed: {on: demo.push, tasks: [push]}\n")
        caplog.set_level(logging.ERROR, "taskengine.webhook")
        assert server.post({"type": "demo.push"}).status_code == 202
        wait_for(lambda: hits)
        os.unlink(server.db_path)
        dispatcher = lambda: [r for r in caplog.records if r.name == "taskengine.webhook"  # noqa: E731
                              and "database pass" in r.getMessage()]
        wait_for(dispatcher)
        time.sleep(4.5)  # four more polls of the old behaviour
        [record] = dispatcher()
        assert record.getMessage().startswith("webhook dispatcher's database pass failed: database file ")
        assert "backing off" in record.getMessage()
        # the traceback: as exc_info, or as text once the engine's secret-redacting log filter
        # (installed by any engine of this process) has turned it into redacted text
        assert record.exc_info is not None or "Traceback (most recent call last)" in (record.exc_text or "")
    finally:
        receiver.shutdown()


def test_replacing_the_database_is_detected(server, tmp_path):
    other = tmp_path / "other.db"
    sqlite3.connect(other).close()
    os.replace(other, server.db_path)
    response = server.post({"type": "after"})
    assert response.status_code == 503
    assert f"database file {server.db_path} was replaced" in response.json()["error"]
    health = healthz(server)
    assert health.status_code == 503 and "was replaced" in health.json()["reasons"][0]


# -- the CLI creates a database only for apply and run ------------------------------------------

@pytest.mark.parametrize("command", [["logs", "list"], ["tasks", "list"], ["audit", "list"],
                                     ["webhooks", "deliveries"], ["emit", "demo.hello"]])
def test_reads_do_not_create_a_database(run_cli, tmp_path, command):
    path = tmp_path / "typo.db"
    result = run_cli("--db", path, *command)
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        f"Error: no database at {path}: run 'taskengine apply RULES' (or 'taskengine run') first "
        "to create it, or pass the right path with --db or TASKENGINE_DB")
    assert not path.exists()


def test_apply_creates_the_database(run_cli, tmp_path, write_rules):
    path = tmp_path / "new.db"
    rules = write_rules("tasks:\n  hello: {action: command.run, with: {argv: ['true']}}\n")
    assert run_cli("--db", path, "apply", rules).exit_code == 0
    assert path.exists()
    assert run_cli("--db", path, "tasks", "list").exit_code == 0


def test_a_foreign_sqlite_file_is_refused_and_left_alone(run_cli, tmp_path, write_rules):
    path = tmp_path / "crm.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
    conn.execute("INSERT INTO customers (name) VALUES ('acme')")
    conn.commit()
    conn.close()
    before = path.read_bytes()
    rules = write_rules("tasks:\n  hello: {action: command.run, with: {argv: ['true']}}\n")
    for command in (["logs", "list"], ["apply", rules]):
        result = run_cli("--db", path, *command)
        assert result.exit_code == 1
        assert result.stderr.strip() == (
            f"Error: {path} is an SQLite database but not taskengine's (no taskengine schema; it has "
            "the tables customers): nothing was changed. Pass taskengine's database, or a new path, "
            "with --db or TASKENGINE_DB")
    assert path.read_bytes() == before
    tables = sqlite3.connect(path).execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    assert tables == [("customers",)]


# -- a full disk ----------------------------------------------------------------------------------

FILL_RULES = """
tasks:
  noop: {action: command.run, with: {argv: ['true']}}
events:
  fill: {on: "fill.*", tasks: [noop]}
"""


def test_full_disk_backs_off_logs_once_and_recovers(applied, db_path, caplog):
    """SQLITE_FULL for real: the engine's own connection may not grow the file any more."""
    caplog.set_level(logging.INFO, "taskengine.engine")
    applied(FILL_RULES)
    engine = Engine(db_path, poll_interval=0.05)
    pages = engine.store.conn.execute("PRAGMA page_count").fetchone()[0]
    engine.store.conn.execute(f"PRAGMA max_page_count = {pages}")
    other = Engine(db_path, manager=engine.manager)
    for i in range(300):  # each creates a run and a decision when evaluated: new pages
        other.emit(f"fill.{i}", {"pad": "x" * 200})
    other.store.close()
    engine.start()
    try:
        wait_for(lambda: engine.loop_guard.failures >= 2)
        time.sleep(1.5)
        # Backing off from 0.2 s, doubling: a handful of tries, not hundreds a second.
        assert engine.loop_guard.failures <= 6
        assert engine.loop_guard.last_error == "OperationalError: database or disk is full"
        failed = [r for r in caplog.records if "engine loop" in r.getMessage()]
        assert len(failed) == 1  # one line, with the traceback, until the interval ends
        # (a RedactingFilter left on the handlers by an in-process `taskengine run` turns exc_info into exc_text)
        assert failed[0].exc_info is not None or "sqlite3.OperationalError" in (failed[0].exc_text or "")
        assert failed[0].getMessage().startswith("engine loop failed: OperationalError: database or disk is full; retrying in 0.2s")
        engine.store.conn.execute("PRAGMA max_page_count = 1073741823")  # room again
        wait_for(lambda: engine.loop_guard.failures == 0, timeout=40)
        wait_for(lambda: not engine.store.conn.execute(
            "SELECT 1 FROM events WHERE processed_at IS NULL LIMIT 1").fetchone())
        assert any(r.getMessage().startswith("engine loop recovered after ") for r in caplog.records)
    finally:
        engine.stop(1)


def test_loop_guard_logs_once_per_interval_and_backs_off_to_a_cap(caplog):
    caplog.set_level(logging.INFO, "guard.test")
    now = [0.0]
    guard = LoopGuard("the loop", logging.getLogger("guard.test"), first=0.2, cap=30, log_every=60,
                      clock=lambda: now[0])
    waits = []
    for _ in range(100):  # 100 failures within the first minute
        waits.append(guard.failed(OSError(28, "No space left on device")))
        now[0] += 0.5
    assert waits[:5] == [0.2, 0.4, 0.8, 1.6, 3.2] and max(waits) == 30 and waits[-1] == 30
    assert len(caplog.records) == 1
    now[0] = 61
    guard.failed(OSError(28, "No space left on device"))
    assert [r.getMessage() for r in caplog.records][1] == (
        "the loop still failing: 101 failure(s) in a row (99 not logged since the last line); "
        "last error: OSError: [Errno 28] No space left on device; next try in 30.0s")
    guard.succeeded()
    assert caplog.records[-1].getMessage() == "the loop recovered after 101 failed step(s)"
    assert guard.failed(OSError("again")) == 0.2  # a new run of failures starts from the first wait


# -- durability ------------------------------------------------------------------------------------

def test_every_connection_syncs_each_commit(server):
    """synchronous=FULL (2): an acknowledged event survives a power loss, not only a crash."""
    import threading

    assert server.post({"type": "durable"}).status_code == 202
    stores = [server.engine.store]
    thread = threading.Thread(target=lambda: stores.append(server.engine._thread_store()))
    thread.start()
    thread.join()  # a store opened like the ingress's and the dispatcher's
    assert [s.conn.execute("PRAGMA synchronous").fetchone()[0] for s in stores] == [2, 2]


def test_synchronous_can_be_traded_for_throughput_and_a_bad_value_is_refused(db_path, monkeypatch):
    from taskengine_core.errors import StoreError
    from taskengine_core.store import Store

    monkeypatch.setenv("TASKENGINE_SYNCHRONOUS", "normal")
    store = Store(db_path)
    assert store.conn.execute("PRAGMA synchronous").fetchone()[0] == 1
    store.close()
    monkeypatch.setenv("TASKENGINE_SYNCHRONOUS", "off")
    with pytest.raises(StoreError) as caught:
        Store(db_path)
    assert str(caught.value) == ("TASKENGINE_SYNCHRONOUS='OFF': expected FULL (the default: every commit "
                                 "survives a power loss) or NORMAL (faster; a power loss may lose the last commits)")
