"""Local receivers for plugin tests: an SMTP server (aiosmtpd) and an HTTP server, both on
127.0.0.1 with a port the system picks. They record what arrives; nothing leaves the machine."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any


def _wait(predicate, count: int, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"expected {count} {what} within {timeout:g}s")
        time.sleep(0.01)


@dataclass
class ReceivedMail:
    mail_from: str
    rcpt_tos: list[str]
    message: Any  # email.message.EmailMessage

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    @property
    def text(self) -> str:
        body = self.message.get_body(("plain",))
        return body.get_content() if body is not None else ""


class SmtpReceiver:
    """A plain SMTP server (no TLS, no AUTH) that keeps every message in :attr:`messages`.
    Needs ``aiosmtpd`` (``pip install aiosmtpd``)."""

    def __init__(self, sender: str = "taskengine@example.org") -> None:
        self.sender = sender
        self.messages: list[ReceivedMail] = []
        self._lock = threading.Lock()
        self._controller = None
        self.port = 0

    @property
    def settings(self) -> dict:
        """A ``settings.email`` section that sends to this server."""
        return {"host": "127.0.0.1", "port": self.port, "security": "none", "sender": self.sender}

    def start(self) -> None:
        import email
        import email.policy

        from aiosmtpd.controller import Controller

        receiver = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                message = email.message_from_bytes(envelope.content.replace(b"\r\n", b"\n"),
                                                   policy=email.policy.default)
                with receiver._lock:
                    receiver.messages.append(ReceivedMail(envelope.mail_from, list(envelope.rcpt_tos), message))
                return "250 OK"

        # aiosmtpd checks its server by connecting to the port it was given: port 0 cannot
        # work, so take one the system hands out
        import socket

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self._controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        self._controller.start()

    def wait_for(self, count: int = 1, timeout: float = 10.0) -> list[ReceivedMail]:
        """Wait until ``count`` messages arrived; returns them all."""
        _wait(lambda: len(self.messages) >= count, count, timeout, "messages")
        return list(self.messages)

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None


@dataclass
class HttpRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class HttpReply:
    status: int = 200
    body: bytes = b"ok"
    headers: dict[str, str] = field(default_factory=dict)


class HttpReceiver:
    """An HTTP server recording each request in :attr:`requests`; it answers 200 unless told
    otherwise with :meth:`reply`."""

    def __init__(self) -> None:
        self.requests: list[HttpRequest] = []
        self._replies: list[HttpReply] = []
        self._lock = threading.Lock()
        self._server = None
        self._thread = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def reply(self, status: int, body: bytes | str = b"", headers: dict[str, str] | None = None) -> None:
        """Answer the next request (not yet answered) with ``status``; calls queue up."""
        data = body.encode() if isinstance(body, str) else body
        with self._lock:
            self._replies.append(HttpReply(status, data, headers or {}))

    def start(self) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with receiver._lock:
                    receiver.requests.append(HttpRequest(self.command, self.path, dict(self.headers), body))
                    answer = receiver._replies.pop(0) if receiver._replies else HttpReply()
                self.send_response(answer.status)
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer.body)))
                self.end_headers()
                self.wfile.write(answer.body)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="http-receiver", daemon=True)
        self._thread.start()

    def wait_for(self, count: int = 1, timeout: float = 10.0) -> list[HttpRequest]:
        """Wait until ``count`` requests arrived; returns them all."""
        _wait(lambda: len(self.requests) >= count, count, timeout, "requests")
        return list(self.requests)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
