"""A receiver's answer that no database can store as it came (a NUL, bytes that are not UTF-8
in the reason phrase or a header) is recorded with U+FFFD in their place. Before, such an
attempt could never be written: every write of the dispatcher's results failed, again at each
pass, so its delivery stayed 'sending' and no later attempt was recorded either."""

from __future__ import annotations

import socket
import threading

import pytest

from taskengine_core.events import Event
from tests.backends import rows
from tests.test_webhook_support import wait_until, webhook_rules

OK = b"200 OK", b"", b"ok"


class HostileReceiver:
    """Answers the first request with ``first`` (status line, extra header lines, body), the
    others with ``200 OK``; an HTTP server made of a socket, because the standard one will
    not send such answers."""

    def __init__(self, first: tuple[bytes, bytes, bytes]) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/hook"
        self.answers = [first]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                head, _, rest = data.partition(b"\r\n\r\n")
                length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                                  if line.lower().startswith(b"content-length")))
                while len(rest) < length:
                    rest += conn.recv(65536)
                status, headers, body = self.answers.pop(0) if self.answers else OK
                conn.sendall(b"HTTP/1.1 " + status + b"\r\nConnection: close\r\n" + headers
                             + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)

    def close(self) -> None:
        self.sock.close()


ANSWERS = {
    "NUL in the reason and body": ((b"500 bad\x00reason", b"", b"bad\x00body"),
                                   "HTTP 500 bad\ufffdreason", "bad\ufffdbody"),
    "reason not UTF-8": ((b"500 B\xffad \xc3(", b"", b"no"), "HTTP 500 B\ufffdad \ufffd(", "no"),
    "Location not UTF-8": ((b"302 Found", b"Location: http://127.0.0.1/\xff\r\n", b""),
                           "HTTP 302 Found: redirect to http://127.0.0.1/\ufffd not followed; "
                           "set the webhook's url to the final address", None),
}


@pytest.mark.parametrize("answer", ANSWERS, ids=list(ANSWERS))
def test_an_answer_no_database_can_store_is_recorded_and_later_ones_too(db_target, write_rules, answer):
    from taskengine_core.apply import apply_config
    from taskengine_core.engine import Engine
    from taskengine_core.plugins import get_plugin_manager
    from taskengine_core.rules.validate import load_config
    from taskengine_core.store import open_store

    first, error, excerpt = ANSWERS[answer]
    server = HostileReceiver(first)
    rules = webhook_rules(server.url) + "events:\n  ping: {on: test.ping, tasks: [notify]}\n"
    store = open_store(db_target)
    try:
        apply_config(store, load_config([write_rules(rules, "rules.yaml")], get_plugin_manager().registry()))
    finally:
        store.close()
    engine = Engine(db_target, poll_interval=0.05)
    engine.start()

    def statuses() -> list[str]:
        return [r["status"] for r in rows(db_target, "SELECT status FROM webhook_deliveries")]

    try:
        engine.emit_many([Event("test.ping", {"n": 1})])
        wait_until(lambda: statuses() == ["delivered"], timeout=20,
                   what="the delivery to be retried and delivered")
        engine.emit_many([Event("test.ping", {"n": 2})])
        wait_until(lambda: statuses() == ["delivered", "delivered"], timeout=20,
                   what="the next delivery recorded too")
    finally:
        engine.stop(grace=5)
        server.close()
    tried = rows(db_target, "SELECT error, response_excerpt FROM webhook_attempts ORDER BY started_at")
    assert [(a["error"], a["response_excerpt"]) for a in tried] == [
        (error, excerpt), (None, "ok"), (None, "ok")]
