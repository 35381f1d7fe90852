"""The HTTP ingress, end to end: a real server on 127.0.0.1, real HTTP clients, a real SQLite file.

Every rejected request is checked for its status, its exact JSON error, its headers, and for
writing nothing. The token is a canary: no response body and no database file may contain it.
"""

from __future__ import annotations

import json
import socket
import sqlite3
import threading
import time
from pathlib import Path

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from taskengine_core import __version__
from taskengine_core import ingress as ingress_module
from taskengine_core.apply import apply_config
from taskengine_core.engine import Engine
from taskengine_core.ingress import IngressConfigError
from taskengine_core.plugins import get_plugin_manager
from taskengine_core.rules.validate import load_config
from taskengine_core.store import Store
from tests.conftest import dump_db

TOKEN = "canary-7f3a9c2e-ingress-token"
MAX_BODY = 1024
UNAUTHORIZED = {"error": "missing or wrong bearer token"}
TOO_LARGE = {"error": f"body larger than {MAX_BODY} bytes"}


class Server:
    """A started engine with its ingress, and a client that remembers every response body."""

    def __init__(self, db_path: Path, engine: Engine) -> None:
        self.db_path, self.engine = db_path, engine
        self.host, port = engine.ingress.address.rsplit(":", 1)
        self.port = int(port)
        self.url = f"http://{engine.ingress.address}"
        self.session = requests.Session()
        self.bodies: list[bytes] = []
        self.initial = dump_db(db_path)

    def post(self, body, *, token: str | None = TOKEN, content_type: str = "application/json",
             headers: dict | None = None) -> requests.Response:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        sent = {"Content-Type": content_type, **(headers or {})}
        if token is not None:
            sent.setdefault("Authorization", f"Bearer {token}")
        response = self.session.post(f"{self.url}/events", data=data, headers=sent, timeout=10)
        self.bodies.append(response.content)
        return response

    def events(self) -> list[tuple]:
        """Rows of the inbox, read through a connection of our own (committed data only)."""
        conn = sqlite3.connect(self.db_path)
        try:
            return conn.execute(
                "SELECT id, type, source, source_id, data, duplicate_of FROM events ORDER BY seq").fetchall()
        finally:
            conn.close()

    def raw(self) -> socket.socket:
        return socket.create_connection((self.host, self.port), timeout=10)


def _apply_settings(db_path: Path, tmp_path: Path, text: str) -> None:
    path = tmp_path / "settings.yaml"
    path.write_text(text)
    apply_config(Store(db_path), load_config([path], get_plugin_manager().registry()))


@pytest.fixture
def start_server(db_path, tmp_path):
    """Start an engine listening on 127.0.0.1 (a free port) after applying ``rules``."""
    started: list[Server] = []

    def start(rules: str = "", *, token: str | None = TOKEN, max_body: int = MAX_BODY,
              rate: float = 1000, ingress: str = "") -> Server:
        _apply_settings(db_path, tmp_path, f"settings:\n  ingress:\n    max_body: {max_body}\n"
                                           f"    rate: {rate}\n{ingress}{rules}")
        engine = Engine(db_path, poll_interval=0.05)
        engine.start(listen="127.0.0.1:0", token=token)
        started.append(Server(db_path, engine))
        return started[-1]

    yield start
    for server in started:
        server.engine.stop(1)
        server.session.close()
        # The canary: the token is in no response and in no database file (WAL included).
        assert not [b for b in server.bodies if TOKEN.encode() in b]
        for path in db_path.parent.glob(db_path.name + "*"):
            assert TOKEN.encode() not in path.read_bytes(), path


@pytest.fixture
def server(start_server) -> Server:
    return start_server()


def assert_rejected(server: Server, response, status: int, body: dict) -> None:
    """The exact status and JSON error, and not one row written (the engine is idle: no other
    request was accepted, so the whole database must be as it was)."""
    assert (response.status_code, response.json()) == (status, body)
    assert response.headers["Content-Type"].startswith("application/json")
    assert dump_db(server.db_path) == server.initial


def post_rejected(server: Server, body, status: int, error: dict, **kwargs) -> requests.Response:
    response = server.post(body, **kwargs)
    assert_rejected(server, response, status, error)
    return response


# -- authentication ----------------------------------------------------------------------------

@pytest.mark.parametrize("headers", [
    {},
    {"Authorization": "Bearer not-the-token"},
    {"Authorization": f"Bearer {TOKEN}x"},
    {"Authorization": f"Basic {TOKEN}"},
    {"Authorization": TOKEN},
    {"Authorization": "Bearer"},
], ids=["missing", "wrong", "longer", "basic-scheme", "no-scheme", "empty"])
def test_wrong_or_missing_token_is_401_and_writes_nothing(server, headers):
    response = post_rejected(server, {"type": "user.login"}, 401, UNAUTHORIZED, token=None, headers=headers)
    assert response.headers["WWW-Authenticate"] == "Bearer"


def test_non_ascii_authorization_header_is_401_not_500(server):
    sock = server.raw()
    body = b'{"type": "user.login"}'
    sock.sendall(b"POST /events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xff\xfe\r\n"
                 b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    status, headers, payload = read_response(sock)
    assert (status, json.loads(payload)) == (401, UNAUTHORIZED)
    assert dump_db(server.db_path) == server.initial


def test_token_from_environment(start_server, monkeypatch):
    monkeypatch.setenv("TASKENGINE_INGRESS_TOKEN", "from-the-environment")
    server = start_server(token=None)
    assert server.post({"type": "a"}, token=TOKEN).status_code == 401
    assert server.post({"type": "a"}, token="from-the-environment").status_code == 202


def test_token_from_a_settings_reference(start_server, monkeypatch):
    monkeypatch.setenv("INGRESS_SECRET", TOKEN)
    server = start_server(token=None, ingress="    token: ${env:INGRESS_SECRET}\n")
    assert server.post({"type": "a"}, token="wrong").status_code == 401
    assert server.post({"type": "a"}).status_code == 202  # and the fixture checks the database


def test_refuses_a_public_address_without_a_token(db_path):
    engine = Engine(db_path)
    try:
        with pytest.raises(IngressConfigError) as raised:
            engine.start(listen="0.0.0.0:0")
    finally:
        engine.stop(1)
    assert str(raised.value) == (
        "refusing to listen on 0.0.0.0 without a token: set TASKENGINE_INGRESS_TOKEN or "
        "settings.ingress.token, or listen on 127.0.0.1")


# -- size --------------------------------------------------------------------------------------

def padded_event(size: int) -> bytes:
    """A valid event whose JSON body is exactly ``size`` bytes."""
    empty = json.dumps({"type": "pad", "data": {"p": ""}}).encode()
    return json.dumps({"type": "pad", "data": {"p": "x" * (size - len(empty))}}).encode()


def test_body_at_the_limit_is_accepted_one_byte_more_is_413(server):
    assert server.post(padded_event(MAX_BODY)).status_code == 202
    before = server.events()
    response = server.post(padded_event(MAX_BODY + 1))
    assert (response.status_code, response.json()) == (413, TOO_LARGE)
    assert response.headers["Connection"] == "close"  # the rest of the body is not read
    assert server.events() == before


def chunked(body: bytes, size: int = 300):
    for i in range(0, len(body), size):
        part = body[i:i + size]
        yield b"%x\r\n%s\r\n" % (len(part), part)
    yield b"0\r\n\r\n"


def post_raw(server: Server, chunks, headers: bytes) -> tuple[int, dict, bytes]:
    sock = server.raw()
    try:
        sock.sendall(b"POST /events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
                     b"Content-Type: application/json\r\n%s\r\n" % (TOKEN.encode(), headers))
        for chunk in chunks:
            sock.sendall(chunk)
        return read_response(sock)
    finally:
        sock.close()


def read_response(sock: socket.socket) -> tuple[int, dict, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        more = sock.recv(65536)
        assert more, f"connection closed before a response: {data!r}"
        data += more
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    while len(body) < int(headers["content-length"]):
        more = sock.recv(65536)
        assert more
        body += more
    return int(lines[0].split()[1]), headers, body


def test_chunked_body_within_the_limit_is_accepted_over_it_is_413(server):
    status, _, body = post_raw(server, chunked(padded_event(MAX_BODY)), b"Transfer-Encoding: chunked\r\n")
    assert status == 202
    before = server.events()
    status, headers, body = post_raw(server, chunked(padded_event(MAX_BODY + 1)),
                                     b"Transfer-Encoding: chunked\r\n")
    assert (status, json.loads(body)) == (413, TOO_LARGE)
    assert server.events() == before


@pytest.mark.parametrize("framing", ["chunked", "content-length"])
def test_huge_body_is_refused_without_reading_it(server, framing):
    """64 MB against a 1 KB limit: 413 arrives, and the server stops reading long before the end
    (the sender is cut off, so far less than the whole body was ever taken)."""
    total, piece = 64 * 1024 * 1024, b"x" * 65536
    headers = (b"Transfer-Encoding: chunked\r\n" if framing == "chunked"
               else b"Content-Length: %d\r\n" % (total + 10))
    sock = server.raw()
    sock.sendall(b"POST /events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
                 b"Content-Type: application/json\r\n%s\r\n" % (TOKEN.encode(), headers))
    sent = {"bytes": 0, "error": None}

    def send() -> None:
        frame = b"%x\r\n%s\r\n" % (len(piece), piece) if framing == "chunked" else piece
        try:
            sock.sendall(b'{"type": "a", "data": {"p": "' if framing != "chunked" else b"")
            while sent["bytes"] < total:
                sock.sendall(frame)
                sent["bytes"] += len(piece)
        except OSError as exc:
            sent["error"] = exc

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    status, headers, body = read_response(sock)
    sender.join(20)
    sock.close()
    assert (status, json.loads(body)) == (413, TOO_LARGE)
    assert headers["connection"] == "close"
    assert isinstance(sent["error"], (BrokenPipeError, ConnectionResetError)), sent
    assert sent["bytes"] < total / 4
    assert dump_db(server.db_path) == server.initial


def test_body_sent_too_slowly_is_408(server, monkeypatch):
    monkeypatch.setattr(ingress_module, "BODY_TIMEOUT", 0.3)
    sock = server.raw()
    sock.sendall(b"POST /events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
                 b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"type\"" % TOKEN.encode())
    status, _, body = read_response(sock)
    sock.close()
    assert (status, json.loads(body)) == (408, {"error": "body not received within 0.3s"})
    assert dump_db(server.db_path) == server.initial


# -- content type and JSON ---------------------------------------------------------------------

@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", ""])
def test_not_json_content_type_is_415(server, content_type):
    post_rejected(server, {"type": "user.login"}, 415, {"error": "expected Content-Type: application/json"},
                  content_type=content_type)


def test_json_content_type_with_charset_is_accepted(server):
    assert server.post({"type": "user.login"}, content_type="application/json; charset=utf-8").status_code == 202


@pytest.mark.parametrize("body, message", [
    (b'{"type": ', "Expecting value: line 1 column 10 (char 9)"),
    (b"", "Expecting value: line 1 column 1 (char 0)"),
    (b'{"type": "a"} trailing', "Extra data: line 1 column 15 (char 14)"),
    (b'{"type": "a", "data": {"x": NaN}}', "NaN is not allowed in JSON"),
    (b'{"type": "a", "data": {"x": 1e999}}', "number 1e999 is out of range"),
    (b'{"type": "\xff"}', "'utf-8' codec can't decode byte 0xff in position 10: invalid start byte"),
], ids=["truncated", "empty", "trailing", "nan", "infinite", "not-utf8"])
def test_malformed_json_is_400(server, body, message):
    post_rejected(server, body, 400, {"error": f"body is not valid JSON: {message}"})


def test_json_nested_too_deeply_is_400(start_server):
    server = start_server(max_body=1_000_000)
    post_rejected(server, b"[" * 100_000 + b"]" * 100_000, 400, {"error": "body is not valid JSON: nested too deeply"})


# -- the event schema --------------------------------------------------------------------------

def nested(levels: int) -> dict:
    """``levels`` levels of mappings: nested(1) is {}."""
    value: dict = {}
    for _ in range(levels - 1):
        value = {"a": value}
    return value


@pytest.mark.parametrize("body, field, message", [
    ([{"type": "a"}], "(event)", "(event): expected a mapping, got a list"),
    ("user.login", "(event)", "(event): expected a mapping, got a string 'user.login'"),
    ({"data": {}}, "type", "type: missing; every event needs a type such as user.login"),
    ({"type": "bad type"}, "type",
     "type: expected an event type such as user.login (letters, digits, _ . : -); got a string 'bad type'"),
    ({"type": 5}, "type", "type: expected a string, got an integer 5"),
    ({"type": "a", "data": [1]}, "data", "data: expected a mapping, got a list"),
    ({"type": "a", "data": "x"}, "data", "data: expected a mapping, got a string 'x'"),
    ({"type": "a", "user": "x"}, "user", "user: unknown key 'user'; expected one of: data, id, source, time, type"),
    ({"type": "a", "time": "yesterday"}, "time", "time: 'yesterday' is not a 'date-time'"),
    ({"type": "a", "time": "2026-02-30T10:00:00Z"}, "time", "time: '2026-02-30T10:00:00Z' is not a 'date-time'"),
    ({"type": "a", "time": "0001-01-01T00:00:00+01:00"}, "time", "time: cannot read '0001-01-01T00:00:00+01:00'; "
     "expected a date-time such as 2026-01-31T10:00:00Z, years 1 to 9999"),
    ({"type": "a", "time": "2026-01-01t10:00:00z"}, "time", "time: cannot read '2026-01-01t10:00:00z'; "
     "expected a date-time such as 2026-01-31T10:00:00Z, years 1 to 9999"),
    ({"type": "a", "source": ""}, "source", "source: expected a non-empty string"),
    ({"type": "a", "source": "taskengine"}, "source", "source: 'taskengine' is reserved for the engine's own events"),
    ({"type": "a", "id": "x" * 201}, "id", f"id: '{'x' * 201}' is too long"),
    ({"type": "a", "data": nested(65)}, "data", "data: nested more than 64 levels deep"),
    # JSON can spell half a surrogate pair; no database or UTF-8 output can hold one
    ({"type": "a", "source": "\ud800"}, "source", "source: not valid Unicode (a lone surrogate)"),
    ({"type": "a", "id": "x\udfff"}, "id", "id: not valid Unicode (a lone surrogate)"),
    ({"type": "a", "data": {"k": ["ok", "\udc00"]}}, "data.k.1", "data.k.1: not valid Unicode (a lone surrogate)"),
    ({"type": "a", "data": {"\ud800": 1}}, "data.\\ud800", "data.\\ud800: a key is not valid Unicode (a lone surrogate)"),
], ids=["array", "string", "missing-type", "type-pattern", "type-not-string", "data-list", "data-string",
        "unknown-field", "time-format", "time-date", "time-range", "time-lowercase", "empty-source", "reserved-source", "long-id",
        "too-deep", "surrogate-source", "surrogate-id", "surrogate-data", "surrogate-key"])
def test_invalid_event_is_422_naming_the_field(server, body, field, message):
    post_rejected(server, body, 422, {"error": f"invalid event: {message}", "field": field})


def test_data_nested_64_levels_is_accepted(server):
    assert server.post({"type": "a", "data": nested(64)}).status_code == 202


# -- rate --------------------------------------------------------------------------------------

def test_too_fast_is_429_with_retry_after(start_server):
    server = start_server(rate=5)  # a burst of 10, then 5 per second
    started = time.monotonic()
    responses = [server.post({"type": "burst", "data": {"n": n}}) for n in range(30)]
    elapsed = time.monotonic() - started
    accepted = [r for r in responses if r.status_code == 202]
    limited = [r for r in responses if r.status_code != 202]
    assert 10 <= len(accepted) <= 10 + 5 * elapsed + 1
    assert limited and all(r.status_code == 429 for r in limited)
    assert all(r.json() == {"error": "too many events; slow down"} for r in limited)
    assert all(int(r.headers["Retry-After"]) >= 1 for r in limited)
    assert [row[0] for row in server.events()] == [r.json()["id"] for r in accepted]


# -- accepted events ---------------------------------------------------------------------------

def test_event_is_committed_before_the_response_arrives(server):
    body = json.dumps({"type": "user.login", "data": {"user": "ada"}, "source": "crm", "id": "e-1",
                       "time": "2026-03-01T09:30:00+01:00"}).encode()
    sock = server.raw()
    sock.sendall(b"POST /events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
                 b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (TOKEN.encode(), len(body), body))
    first = sock.recv(1)  # the response has started to arrive; nothing of it is read yet
    rows = sqlite3.connect(server.db_path).execute(
        "SELECT id, type, data, time FROM events WHERE source = 'crm' AND source_id = 'e-1'").fetchall()
    assert len(rows) == 1
    status, headers, payload = read_response(_Prefixed(sock, first))
    sock.close()
    assert status == 202
    assert json.loads(payload) == {"id": rows[0][0]}
    assert rows[0][1:] == ("user.login", '{"user":"ada"}', "2026-03-01T08:30:00.000000Z")


class _Prefixed:
    """A socket whose first bytes were already received."""

    def __init__(self, sock: socket.socket, prefix: bytes) -> None:
        self.sock, self.prefix = sock, prefix

    def recv(self, n: int) -> bytes:
        if self.prefix:
            out, self.prefix = self.prefix, b""
            return out
        return self.sock.recv(n)


def test_default_source_is_http(server):
    response = server.post({"type": "user.login"})
    assert server.events() == [(response.json()["id"], "user.login", "http", None, "{}", None)]


RULES = """
tasks:
  greet:
    action: command.run
    with: {argv: [echo, hi]}
events:
  login: {on: user.login, tasks: [greet]}
"""


def test_duplicate_source_and_id_is_accepted_but_triggers_nothing(start_server):
    server = start_server(RULES)
    event = {"type": "user.login", "source": "crm", "id": "evt-42", "data": {"user": "ada"}}
    first, second = server.post(event), server.post(event)
    assert (first.status_code, second.status_code) == (202, 202)
    assert first.json()["id"] != second.json()["id"]
    rows = server.events()
    assert [(r[0], r[5]) for r in rows] == [(first.json()["id"], None), (second.json()["id"], first.json()["id"])]
    conn = sqlite3.connect(server.db_path)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # the engine evaluates the inbox in its own thread
        runs = conn.execute("SELECT event_id, status FROM runs").fetchall()
        if runs and runs[0][1] == "succeeded":
            break
        time.sleep(0.05)
    assert conn.execute("SELECT event_id, status FROM runs").fetchall() == [(first.json()["id"], "succeeded")]
    assert conn.execute("SELECT decision FROM decisions WHERE event_id = ?",
                        (second.json()["id"],)).fetchall() == [("duplicate",)]


def test_concurrent_events_are_all_committed(server):
    results: list[int] = []

    def client(n: int) -> None:
        with requests.Session() as session:
            for i in range(20):
                r = session.post(f"{server.url}/events", json={"type": "load", "id": f"{n}-{i}"},
                                 headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
                results.append(r.status_code)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [202] * 160
    assert len(server.events()) == 160


def test_healthz(server):
    server.post({"type": "user.login"})
    response = requests.get(f"{server.url}/healthz", timeout=10)
    server.bodies.append(response.content)
    assert response.status_code == 200
    body = response.json()
    assert body.keys() == {"status", "version", "inbox", "runs_pending", "runs_running", "loop"}
    assert body["loop"]["failures_in_a_row"] == 0 and body["loop"]["last_step_seconds_ago"] >= 0
    assert (body["status"], body["version"], body["runs_pending"], body["runs_running"]) == ("ok", __version__, 0, 0)
    assert body["inbox"] in (0, 1)  # the engine may already have evaluated the event


def test_after_stop_nothing_is_accepted(start_server):
    server = start_server()
    assert server.post({"type": "before.stop"}).status_code == 202
    server.engine.stop(1)
    with pytest.raises(requests.ConnectionError):
        server.session.post(f"{server.url}/events", json={"type": "after.stop"}, timeout=5,
                            headers={"Authorization": f"Bearer {TOKEN}"})
    assert [r[1] for r in server.events()] == ["before.stop"]


# -- fuzz --------------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12)
times = st.sampled_from(["2026-01-01T00:00:00Z", "2026-01-01t00:00:00z", "9999-12-31T23:59:59-01:00",
                         "0001-01-01T00:00:00+01:00", "2026-06-30T23:59:60Z"]) | st.text(max_size=25)
valid_events = st.fixed_dictionaries(
    {"type": st.sampled_from(["user.login", "a:b-c_d", "X"])},
    optional={"data": st.dictionaries(st.text(max_size=8), json_values, max_size=4),
              "source": st.sampled_from(["crm", "billing"]), "id": st.text(min_size=1, max_size=10),
              "time": times})
keys = st.sampled_from(["type", "data", "source", "id", "time", "extra"])


@st.composite
def events_with_one_fault(draw) -> dict:
    """A mostly valid event with at most one field replaced, removed or added."""
    event = draw(valid_events)
    key = draw(keys)
    action = draw(st.sampled_from(["keep", "replace", "remove"]))
    if action == "replace":
        event[key] = draw(json_values | st.sampled_from(["", "taskengine", "bad type", "\ud800", {"k": "a\udfffb"}]))
    elif action == "remove":
        event.pop(key, None)
    return event


bodies = st.one_of(
    st.binary(max_size=300),
    json_values.map(lambda v: json.dumps(v).encode()),
    events_with_one_fault().map(lambda v: json.dumps(v).encode()),
    st.binary(min_size=MAX_BODY - 5, max_size=MAX_BODY + 50),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=bodies, content_type=st.sampled_from(["application/json"] * 4 + ["application/json; charset=utf-8",
                                                                           "text/json", "", "application/xml"]))
def test_fuzzed_bodies_never_fail_the_server_and_rejections_write_nothing(server, body, content_type):
    before = len(server.events())
    response = server.post(body, content_type=content_type)
    assert response.status_code in (202, 400, 413, 415, 422, 429), response.text
    assert response.headers["Content-Type"].startswith("application/json")
    after = server.events()
    if response.status_code == 202:
        assert len(after) == before + 1 and after[-1][0] == response.json()["id"]
        sent = json.loads(body).get("data", {})
        assert json.loads(after[-1][4], parse_constant=pytest.fail) == sent  # strict JSON, as sent
    else:
        assert len(after) == before
        assert set(response.json()) <= {"error", "field"}
