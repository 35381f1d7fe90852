"""Webhook egress and receivers that misbehave: unspecified addresses under a loopback deny
list, and a 2xx answer whose body never finishes. Real engine, real sockets on loopback."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from taskengine_webhook.egress import EgressPolicy
from tests.test_webhook_support import (  # noqa: F401 (fixtures)
    attempts, engine, queue_run, receiver, wait_status, webhook_rules)

DENY_LOOPBACK = "settings:\n  webhook: {backoff: 0.05, max_backoff: 1, deny: [127.0.0.0/8, '::1/128']}"


class Listener:
    """A bare TCP listener that counts the connections reaching it."""

    def __init__(self, family: socket.AddressFamily, host: str) -> None:
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.bind((host, 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


@pytest.mark.parametrize("address, reached", [("0.0.0.0", "127.0.0.1"), ("0.1.2.3", "127.0.0.1"),
                                              ("::", "::1"), ("::ffff:0.0.0.0", "127.0.0.1")])
def test_unspecified_addresses_are_checked_as_the_loopback_they_reach(address, reached):
    policy = EgressPolicy(deny=["127.0.0.0/8", "::1/128"])
    reason = policy.refused(address)
    assert reason is not None and f"which connects to this host ({reached})" in reason
    assert "denied by settings.webhook.deny" in reason
    assert EgressPolicy().refused(address) is None  # loopback is reachable by default
    assert EgressPolicy(deny=["0.0.0.0/0", "::/0"], allow=["127.0.0.1/32", "::1/128"]).refused(address) is None


@pytest.mark.parametrize("family, bind, url_host", [
    (socket.AF_INET, "127.0.0.1", "0.0.0.0"),
    (socket.AF_INET6, "::1", "[::]"),
], ids=["0.0.0.0", "[::]"])
def test_deny_loopback_also_refuses_unspecified_addresses(family, bind, url_host, applied, engine):
    local = Listener(family, bind)
    try:
        applied(webhook_rules(f"http://{url_host}:{local.port}/hook", settings=DENY_LOOPBACK))
        e = engine()
        delivery_id = f"msg_{queue_run(e, 'notify')}"
        row = wait_status(e.db_path, delivery_id, "failed")
        assert "which connects to this host" in row["last_error"]
        assert "denied by settings.webhook.deny" in row["last_error"]
        time.sleep(0.3)  # a connection, had one been made, would have been accepted by now
        assert local.accepted == 0
        assert attempts(e.db_path, delivery_id)[0]["address"] is None
    finally:
        local.close()


class SlowBodyServer:
    """Answers every request with ``200 OK``, a Content-Length of 10,000 and 5 bytes of body,
    then holds the connection open without sending the rest."""

    def __init__(self, hold: float) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.requests = 0
        self.hold = hold
        self._threads: list[threading.Thread] = []
        self._accept = threading.Thread(target=self._run, daemon=True)
        self._accept.start()

    def _run(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            thread = threading.Thread(target=self._answer, args=(conn,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            head, _, body = data.partition(b"\r\n\r\n")
            length = int([line.split(b":")[1] for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length")][0])
            while len(body) < length:
                body += conn.recv(65536)
            self.requests += 1
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 10000\r\n\r\nhello")
            time.sleep(self.hold)

    def close(self) -> None:
        self.sock.close()


def test_2xx_followed_by_a_slow_body_is_delivered_once(applied, engine):
    server = SlowBodyServer(hold=4)
    try:
        applied(webhook_rules(f"http://127.0.0.1:{server.port}/hook", extra="    timeout: 3\n    retries: 2"))
        e = engine()
        delivery_id = f"msg_{queue_run(e, 'notify')}"
        row = wait_status(e.db_path, delivery_id, ("delivered", "exhausted"), timeout=20)
        assert row["status"] == "delivered" and row["attempts"] == 1
        first = attempts(e.db_path, delivery_id)[0]
        assert (first["status_code"], first["outcome"], first["error"]) == (200, "succeeded", None)
        assert first["response_excerpt"] == "hello"
        assert server.requests == 1
    finally:
        server.close()
