"""The ingress under attack and under strain, with real sockets on 127.0.0.1: floods of idle
connections, heads that never finish, malformed requests carrying the token, bodies that lie
about their encoding, duplicate keys, another process holding the write lock, and /healthz
reporting a loop that stopped making progress."""

from __future__ import annotations

import gzip
import json
import logging
import socket
import sqlite3
import threading
import time

import pytest
import requests

from tests.test_ingress import (  # noqa: F401 (fixtures)
    TOKEN, Server, assert_rejected, read_response, server, start_server)

INGRESS_LOG = "taskengine.ingress"


def ingress_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == INGRESS_LOG]


def healthz(server: Server) -> requests.Response:
    response = requests.get(f"{server.url}/healthz", timeout=10)
    server.bodies.append(response.content)
    return response


def closed_by_server(sock: socket.socket) -> bool:
    """Whether the server closed the connection (EOF or reset) rather than keeping it open."""
    sock.settimeout(10)
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


# -- connections -------------------------------------------------------------------------------

@pytest.mark.parametrize("flood_size, cap, settings", [
    (300, 20, "    max_connections: 20\n    header_timeout: 60\n"),
    (1100, 256, "    header_timeout: 60\n"),  # the default cap, as under systemd's 1,024 open files
], ids=["cap-20", "default-cap"])
def test_flood_of_idle_connections_is_closed_while_healthz_and_post_answer(start_server, caplog, flood_size,
                                                                           cap, settings):
    caplog.set_level(logging.WARNING, INGRESS_LOG)
    server = start_server(ingress=settings)
    assert server.engine.ingress.max_connections == cap
    flood = [server.raw() for _ in range(flood_size)]
    for sock in flood[::2]:
        sock.sendall(b"POST /events HTTP/1.1\r\nHost: x\r\n")  # half of them start a head, never end it
    assert healthz(server).status_code == 200
    assert server.post({"type": "during.flood"}).status_code == 202
    assert [e[1] for e in server.events()] == ["during.flood"]
    assert len(server.engine.ingress.guard.open) <= cap
    closed = sum(closed_by_server(sock) for sock in flood[:flood_size - cap])  # the newest may still be open
    assert closed == flood_size - cap
    for sock in flood:
        sock.close()
    server.engine.stop(1)
    lines = ingress_lines(caplog)
    assert len(lines) == 2, lines  # the first at once, the rest in one summary: not one per connection
    assert lines[0].startswith("ingress: closed while idle to make room")
    assert (f"closed while idle to make room (more than {cap} open at once; "
            "settings.ingress.max_connections)") in lines[1]


def test_a_head_never_finished_is_closed_after_the_header_timeout(start_server, caplog):
    caplog.set_level(logging.WARNING, INGRESS_LOG)
    server = start_server(ingress="    header_timeout: 0.5\n")
    silent, partial = server.raw(), server.raw()
    partial.sendall(b"POST /events HTTP/1.1\r\nHost: x\r\nAuthoriz")
    assert closed_by_server(silent) and closed_by_server(partial)
    assert server.post({"type": "after"}).status_code == 202  # a prompt client is not affected
    server.engine.stop(1)
    lines = ingress_lines(caplog)
    assert lines[0] == ("ingress: closed after sending no complete request head within 0.5s; "
                        "further ones are summed up every 60s")
    assert lines[1:] == ["ingress, last 60s: 1 closed after sending no complete request head within "
                         "0.5s (settings.ingress.header_timeout)"]


def test_when_every_connection_is_busy_a_new_one_gets_503(start_server):
    server = start_server(ingress="    max_connections: 2\n")
    busy = [server.raw() for _ in range(2)]
    for sock in busy:  # a head, and a body still on its way: busy, not idle
        sock.sendall(b"POST /events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Type: "
                     b"application/json\r\nContent-Length: 16\r\n\r\n{\"type\"" % TOKEN.encode())
    time.sleep(0.2)  # let the server read both heads
    status, headers, body = read_response(server.raw())
    assert (status, json.loads(body)) == (503, {"error": "too many connections; try again"})
    assert headers["retry-after"] == "1"
    for sock in busy:
        sock.sendall(b': "busy"}')
        status, _, _ = read_response(sock)
        assert status == 202
    assert [e[1] for e in server.events()] == ["busy", "busy"]


# -- malformed requests --------------------------------------------------------------------------

def test_malformed_requests_are_one_line_each_burst_and_never_show_the_token(start_server, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("TASKENGINE_INGRESS_TOKEN", TOKEN)
    server = start_server(token=None)
    sock = server.raw()
    sock.sendall(b"POST /events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\x01\r\n"
                 b"Content-Type: application/json\r\nContent-Length: 13\r\n\r\n{\"type\": \"a\"}" % TOKEN.encode())
    status, _, body = read_response(sock)
    server.bodies.append(body)
    assert (status, json.loads(body)) == (400, {"error": "malformed HTTP request: Invalid header value char"})
    for _ in range(5):
        status, _, body = read_response_of(server, b"GARBAGE\r\n\r\n")
        assert status == 400 and json.loads(body)["error"].startswith("malformed HTTP request: ")
    assert server.post({"type": "still.fine"}).status_code == 202
    # Registered like every resolved secret: `taskengine run` scrubs it from every log line.
    redact = server.engine.secrets.redactor
    assert TOKEN not in redact(f"header b'Bearer {TOKEN}\\x01' and {TOKEN!r}")
    server.engine.stop(1)
    text = caplog.text
    assert TOKEN not in text and "Traceback" not in text
    lines = ingress_lines(caplog)
    assert lines[0] == ("ingress: malformed requests answered 400: malformed HTTP request: Invalid header "
                        "value char (from 127.0.0.1); further ones are summed up every 60s")
    assert lines[1:] == ["ingress, last 60s: 5 malformed requests answered 400"]
    assert server.events()[-1][1] == "still.fine" and len(server.events()) == 1


def read_response_of(server: Server, raw: bytes) -> tuple[int, dict, bytes]:
    sock = server.raw()
    try:
        sock.sendall(raw)
        return read_response(sock)
    finally:
        sock.close()


def test_content_encoding_gzip_with_a_plain_body_is_400(server):
    response = server.post({"type": "a"}, headers={"Content-Encoding": "gzip"})
    assert_rejected(server, response, 400, {
        "error": "body cannot be decoded as Content-Encoding: gzip; send it so encoded, or plain "
                 "without that header"})


def test_a_real_gzip_body_is_accepted(server):
    response = server.post(gzip.compress(b'{"type": "zipped"}'), headers={"Content-Encoding": "gzip"})
    assert response.status_code == 202
    assert [e[1] for e in server.events()] == ["zipped"]


@pytest.mark.parametrize("body, key", [
    (b'{"type": "a", "data": {"user": "alice", "user": "root"}}', "user"),
    (b'{"type": "a", "type": "b"}', "type"),
    (b'{"type": "a", "data": {"x": [{"k": 1, "k": 2}]}}', "k"),
])
def test_duplicate_keys_are_refused_naming_the_key(server, body, key):
    response = server.post(body)
    assert_rejected(server, response, 400, {
        "error": f"body is not valid JSON: duplicate key {key!r} in one object; send each key once"})


def test_unknown_path_and_method(server):
    response = requests.get(f"{server.url}/events", timeout=10)
    assert (response.status_code, response.json(), response.headers["Allow"]) == (
        405, {"error": "use POST /events"}, "POST")
    response = requests.get(f"{server.url}/nope", timeout=10)
    assert response.status_code == 404
    assert response.json() == {"error": "not found: the ingress serves POST /events and GET /healthz"}


# -- /healthz --------------------------------------------------------------------------------------

def test_healthz_and_post_do_not_wait_behind_another_process_write_lock(server):
    other = sqlite3.connect(server.db_path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process (say a sqlite3 shell) holds the write lock
    posted: list[int] = []
    poster = threading.Thread(target=lambda: posted.append(server.post({"type": "waited"}).status_code))
    poster.start()
    try:
        time.sleep(0.3)  # the POST is waiting for the lock now
        response = healthz(server)  # answered while the lock is still held
        assert response.status_code == 200 and response.json()["status"] == "ok"
        assert posted == []  # its event is not committed yet, so it is not acknowledged either
    finally:
        other.execute("COMMIT")
        other.close()
    poster.join(timeout=30)
    assert posted == [202]
    assert [e[1] for e in server.events()] == ["waited"]


def test_healthz_reports_a_loop_that_has_stopped_progressing_while_work_waits(start_server):
    from taskengine_core.store.db import _write_lock
    import os

    server = start_server(ingress="    stall_after: 0.5\n")
    lock = _write_lock(os.path.realpath(server.db_path))
    with lock:  # the loop's next write (evaluating the event below) hangs here, like a stuck step
        other = sqlite3.connect(server.db_path, isolation_level=None)
        other.execute("INSERT INTO events (id, type, source, data, time, received_at) VALUES "
                      "('ev1', 'stuck.here', 'test', '{}', '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z')")
        other.close()
        server.engine.wake.set()
        deadline = time.monotonic() + 10
        while (response := healthz(server)).status_code == 200 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert response.status_code == 503
        body = response.json()
        assert body["status"] == "failing" and body["inbox"] == 1
        assert len(body["reasons"]) == 1
        assert body["reasons"][0].startswith("the engine loop has not completed a step for ")
        assert body["reasons"][0].endswith("s while 1 event(s) wait: it is stuck (see the engine's log); restart it")
    deadline = time.monotonic() + 10
    while (response := healthz(server)).status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert response.json()["status"] == "ok"


def test_healthz_counts_come_from_indexes():
    from taskengine_core.store import Store
    from taskengine_core.store.health_queries import COUNT_CAP, health_counts

    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(f"{tmp}/t.db")
        plans = []
        conn = store.conn
        original = conn.execute
        for sql in ("SELECT count(*) FROM (SELECT 1 FROM events WHERE processed_at IS NULL LIMIT 1)",
                    "SELECT count(*) FROM (SELECT 1 FROM runs WHERE status = 'pending' LIMIT 1)",
                    "SELECT count(*) FROM (SELECT 1 FROM runs WHERE status = 'running' LIMIT 1)",
                    "SELECT received_at FROM events WHERE processed_at IS NULL ORDER BY seq LIMIT 1",
                    "SELECT min(not_before) FROM runs WHERE status = 'pending'"):
            plans.append(" ".join(row[3] for row in original("EXPLAIN QUERY PLAN " + sql)))
        assert all("USING INDEX" in plan or "USING COVERING INDEX" in plan for plan in plans), plans
        assert not any(plan.startswith("SCAN runs ") and "INDEX" not in plan for plan in plans)
        with store.write() as db:
            db.conn.executemany(
                "INSERT INTO runs (id, task, status, trigger, not_before, created_at) VALUES (?, 't', ?, 'manual', ?, ?)",
                [(f"r{i}", "pending" if i % 2 else "succeeded", "2026-01-01T00:00:00.000000Z",
                  "2026-01-01T00:00:00.000000Z") for i in range(2 * COUNT_CAP + 10)])
        counts = health_counts(conn, "2026-06-01T00:00:00.000000Z")
        assert counts["runs_pending"] == COUNT_CAP and counts["run_due"] is True
        assert counts["inbox"] == 0 and counts["oldest_waiting_event"] is None
        store.close()


def test_taskengine_run_never_logs_the_environment_token(tmp_path):
    """The reported case, end to end: `taskengine run` with TASKENGINE_INGRESS_TOKEN, a request
    whose Authorization header carries a control byte, then whatever the process wrote."""
    import os
    import re
    import signal
    import subprocess
    import sys

    env = {**os.environ, "TASKENGINE_INGRESS_TOKEN": TOKEN, "TASKENGINE_DB": str(tmp_path / "run.db")}
    proc = subprocess.Popen([sys.executable, "-m", "taskengine_core", "run", "--listen", "127.0.0.1:0"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = []
        while not (found := re.search(r"ingress on http://127\.0\.0\.1:(\d+)", lines[-1] if lines else "")):
            line = proc.stderr.readline()
            assert line, "".join(lines)
            lines.append(line)
        port = int(found.group(1))
        for raw in (b"POST /events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\x01\r\n\r\n",
                    b"POST /events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nX-Bad: \x7f\r\n\r\n",
                    b"GET /healthz HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\x00\r\n\r\n"):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                sock.sendall(raw % TOKEN.encode())
                assert TOKEN.encode() not in sock.recv(65536)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    text = "".join(lines) + err + out
    assert "malformed HTTP request" in text
    assert TOKEN not in text and "Traceback" not in text


def test_1100_idle_connections_under_a_1024_file_limit(tmp_path):
    """The reported case, end to end: `taskengine run` with systemd's default open-file limit
    (1,024) and 1,100 connections that never send a head. /healthz and POST /events answer, the
    engine never runs out of files, and the log holds a few lines, not one per connection."""
    import os
    import re
    import resource
    import signal
    import subprocess
    import sys

    def limit_files():
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))

    env = {**os.environ, "TASKENGINE_DB": str(tmp_path / "run.db")}
    env.pop("TASKENGINE_INGRESS_TOKEN", None)
    proc = subprocess.Popen([sys.executable, "-m", "taskengine_core", "run", "--listen", "127.0.0.1:0"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=limit_files)
    flood = []
    try:
        lines = []
        while not (found := re.search(r"ingress on http://127\.0\.0\.1:(\d+)", lines[-1] if lines else "")):
            line = proc.stderr.readline()
            assert line, "".join(lines)
            lines.append(line)
        port = int(found.group(1))
        for i in range(1100):
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            if i % 2:
                sock.sendall(b"POST /events HTTP/1.1\r\nHost: x\r\n")
            flood.append(sock)
        base = f"http://127.0.0.1:{port}"
        health = requests.get(f"{base}/healthz", timeout=10)
        assert health.status_code == 200 and health.json()["status"] == "ok"
        posted = requests.post(f"{base}/events", json={"type": "during.flood"}, timeout=10)
        assert posted.status_code == 202
        open_files = len(os.listdir(f"/proc/{proc.pid}/fd"))
        assert open_files < 1024 - 256  # room left for the database, tasks and plugins
    finally:
        for sock in flood:
            sock.close()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    log = "".join(lines) + err
    assert "Too many open files" not in log and "Traceback" not in log
    flood_lines = [line for line in log.splitlines() if "closed while idle to make room" in line]
    assert 1 <= len(flood_lines) <= 2, log[-2000:]
    assert len(log.splitlines()) < 20, log[-2000:]
