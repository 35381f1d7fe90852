"""Shared by the webhook tests (no tests of its own): a real HTTP receiver on 127.0.0.1 that
records every request and answers as told, an engine that runs for real, and the Standard
Webhooks check made with the official ``standardwebhooks`` library."""

from __future__ import annotations

import base64
import os
import secrets
import socket
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

import pytest

standardwebhooks = pytest.importorskip("standardwebhooks")


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    time: float


@dataclass
class Reply:
    status: int = 200
    body: bytes = b"ok"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    echo_headers: bool = False  # put every request header in the response body


class Receiver:
    """A threaded HTTP/1.1 server. ``replies`` are used in order; the last one repeats. With
    ``tls`` (a server ``ssl.SSLContext``) it speaks HTTPS."""

    def __init__(self, replies: list[Reply] | Callable[[Request], Reply] | None = None,
                 tls=None) -> None:
        self.requests: list[Request] = []
        self.connections = 0
        self._replies = replies if replies is not None else [Reply()]
        self._lock = threading.Lock()
        self._release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                req = Request(self.command, self.path, dict(self.headers.items()), body, time.time())
                reply = receiver._record(req)
                if reply.delay:
                    receiver._release.wait(reply.delay)
                out = reply.body
                if reply.echo_headers:
                    out += b" you sent: " + str(self.headers).encode() + b" to " + self.path.encode()
                self.send_response(reply.status)
                for k, v in reply.headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            do_POST = do_PUT = do_PATCH = do_GET = _handle

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            # socketserver's backlog is 5: a burst of new connections (dispatcher processes
            # starting with 32 workers each) on a loaded machine would be refused or reset
            request_queue_size = 128

            def process_request(self, request, client_address):
                with receiver._lock:
                    receiver.connections += 1
                super().process_request(request, client_address)

        self.server = Server(("127.0.0.1", 0), Handler)
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}/hook"
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def _record(self, req: Request) -> Reply:
        with self._lock:
            self.requests.append(req)
            if callable(self._replies):
                return self._replies(req)
            index = min(len(self.requests), len(self._replies)) - 1
            return self._replies[index]

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Request]:
        wait_until(lambda: len(self.requests) >= count, timeout, f"{count} request(s) at {self.url}")
        return self.requests

    def stop(self) -> None:
        self._release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    made: list[Receiver] = []

    def make(replies=None, tls=None) -> Receiver:
        r = Receiver(replies, tls)
        made.append(r)
        return r

    yield make
    for r in made:
        r.stop()


@pytest.fixture
def engine(db_path):
    """Start real engines on the test database; all are stopped at the end."""
    from taskengine_core.engine import Engine

    made = []

    def start(**kwargs):
        e = Engine(db_path, poll_interval=0.05, **kwargs)
        e.start()
        made.append(e)
        return e

    yield start
    for e in made:
        e.stop(grace=5)


@pytest.fixture(scope="session")
def tls_server_context(tmp_path_factory):
    """A server TLS context with a self-signed certificate for 127.0.0.1, made here."""
    import datetime
    import ipaddress
    import ssl

    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    folder = tmp_path_factory.mktemp("webhook-tls")
    (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                       serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(folder / "cert.pem", folder / "key.pem")
    return context


def queue_run(engine_, task: str) -> str:
    """Queue a manual run of ``task`` for the running ``engine_`` and return its id. Through a
    connection of its own: the engine's ``queue_run`` from another thread shares the engine
    loop's connection, whose unlocked reads can make it fail with SQLITE_BUSY_SNAPSHOT."""
    from taskengine_core.engine import Engine

    other = Engine(engine_.db_path, manager=engine_.manager)
    try:
        run_id = other.queue_run(task)
    finally:
        other.store.close()
    engine_.wake.set()
    return run_id


def wait_until(predicate, timeout: float = 10.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.01)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def verify(secret: str, req: Request):
    """Verify with the official library (raises on a bad signature); returns the parsed body."""
    return standardwebhooks.Webhook(secret).verify(req.body, req.headers)


def query(db_path, sql: str, params=()) -> list[dict]:
    conn = sqlite3.connect(db_path)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute(sql, params)]
    finally:
        conn.close()


def deliveries(db_path, **where) -> list[dict]:
    clause = " AND ".join(f"{k} = ?" for k in where) or "1"
    return query(db_path, f"SELECT * FROM webhook_deliveries WHERE {clause} ORDER BY created_at, rowid",
                 tuple(where.values()))


def attempts(db_path, delivery_id: str) -> list[dict]:
    return query(db_path, "SELECT * FROM webhook_attempts WHERE delivery_id = ? ORDER BY number",
                 (delivery_id,))


def wait_status(db_path, delivery_id: str, statuses, timeout: float = 10.0) -> dict:
    statuses = {statuses} if isinstance(statuses, str) else set(statuses)

    def done():
        rows = query(db_path, "SELECT * FROM webhook_deliveries WHERE id = ?", (delivery_id,))
        return rows[0] if rows and rows[0]["status"] in statuses else None

    return wait_until(done, timeout, f"delivery {delivery_id} to be {'/'.join(sorted(statuses))}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env_secret(monkeypatch, name: str, value: str | None = None) -> str:
    value = value or secrets.token_urlsafe(24)
    monkeypatch.setenv(name, value)
    return value


FAST = """
settings:
  webhook: {backoff: 0.05, max_backoff: 1}
"""

__all__ = ["FAST", "Receiver", "Reply", "Request", "attempts", "deliveries", "engine", "env_secret",
           "free_port", "new_secret", "os", "query", "queue_run", "receiver", "tls_server_context", "verify",
           "wait_status", "wait_until"]


def webhook_rules(url: str, *, extra: str = "", task_with: str = "{webhook: hook}", settings: str = FAST) -> str:
    """A rule file with one webhook ``hook`` at ``url`` and a task ``notify`` that sends to it."""
    return f"""
{settings}
webhooks:
  hook:
    url: {url}
{extra}
tasks:
  notify:
    action: webhook.send
    with: {task_with}
"""
