"""What a receiver answers is stored as text either backend can hold: a reason phrase in a
legacy encoding (``500 Interner Serverfehler`` from a Latin-1 server, say) reaches aiohttp as
undecodable bytes, which it keeps as lone surrogates; neither SQLite nor PostgreSQL can encode
those, so the attempt could never be recorded."""

from __future__ import annotations

import socket
import threading

from tests.test_webhook_processes import processes_rules
from tests.test_webhook_processes_postgres import _applied_on, _statuses
from tests.test_webhook_support import wait_until


class Latin1Receiver:
    """Answers the first request ``500`` with a Latin-1 reason phrase (not UTF-8) and a
    Latin-1 header, the others ``200`` (a socket: the standard server sends no such bytes)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/hook"
        self.requests = 0
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
                self.requests += 1
                status = b"500 Interner Serverfehler \xe4\xf6\xfc" if self.requests == 1 else b"200 OK"
                conn.sendall(b"HTTP/1.1 " + status + b"\r\nConnection: close\r\nX-Info: gr\xfc\xdf"
                             b"\r\nContent-Length: 2\r\n\r\nno")

    def close(self) -> None:
        self.sock.close()


def test_a_reason_phrase_that_is_not_utf8_is_recorded_and_the_delivery_goes_on(db_target, write_rules):
    from taskengine_core.engine import Engine
    from tests.backends import rows

    server = Latin1Receiver()
    _applied_on(db_target, write_rules, processes_rules(server.url, 0))
    engine = Engine(db_target, poll_interval=0.05)
    engine.start()
    try:
        engine.emit("test.ping", {"n": 1})
        wait_until(lambda: _statuses(db_target) == ["delivered"], timeout=20,
                   what="the failed attempt recorded, the delivery retried and delivered")
        engine.emit("test.ping", {"n": 2})
        wait_until(lambda: _statuses(db_target) == ["delivered", "delivered"], timeout=20,
                   what="the next delivery recorded too")
    finally:
        engine.stop(grace=5)
        server.close()
    tried = rows(db_target, "SELECT error FROM webhook_attempts ORDER BY started_at")
    assert [a["error"] for a in tried] == ["HTTP 500 Interner Serverfehler \ufffd\ufffd\ufffd", None, None]
