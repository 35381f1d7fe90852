"""The parts of one webhook attempt that are prepared once per destination or made cheaper per
attempt: what is sent and what is recorded must be exactly what a fresh merge would give, every
attempt signed on its own, nothing shared between attempts, and the texts stored the same."""

from __future__ import annotations

import asyncio
import json

import pytest

from taskengine_core.secrets import Redactor
from taskengine_core.store.deliveries import headers_json
from taskengine_webhook.config import Destination, Preparer
from taskengine_webhook.delivery import Message, attempt, decide
from taskengine_webhook.config import WebhookSettings
from taskengine_webhook.sender import make_session, policy_for
from tests.test_webhook_support import Reply, new_secret, receiver, verify  # noqa: F401 (fixture)


def _message(n: int, headers: dict | None = None) -> Message:
    return Message(f"msg_{n:04d}", "hook", "t", json.dumps({"n": n}), "application/json",
                   headers or {}, 0, 3)


def _attempts(dest: Destination, messages: list[Message], prepare: Preparer):
    async def main():
        policy = policy_for(WebhookSettings())
        session = make_session(policy)
        try:
            return [await attempt(session, dest, m, policy=policy, prepare=prepare) for m in messages]
        finally:
            await session.close()

    return asyncio.run(main())


@pytest.fixture
def setup(receiver, monkeypatch):  # noqa: F811 (fixture)
    secret, token = new_secret(), "tok-0123456789"
    monkeypatch.setenv("PARTS_SECRET", secret)
    monkeypatch.setenv("PARTS_TOKEN", token)
    server = receiver([Reply(200, b"ok")])
    redactor = Redactor()

    def resolve(value):
        for name in ("PARTS_SECRET", "PARTS_TOKEN"):
            if value == f"${{env:{name}}}":
                redactor.add(monkeypatch_env[name])
                return monkeypatch_env[name]
        return value

    monkeypatch_env = {"PARTS_SECRET": secret, "PARTS_TOKEN": token}
    dest = Destination("hook", True, {
        "url": server.url, "secret": "${env:PARTS_SECRET}", "timeout": "7s",
        "auth": {"type": "bearer", "token": "${env:PARTS_TOKEN}"},
        "headers": {"X-Team": "ops", "X-Key": "${env:PARTS_TOKEN}"}})
    return server, dest, Preparer(resolve, redactor), secret, token


def test_headers_sent_and_recorded_per_attempt(setup):
    server, dest, prepare, secret, token = setup
    plain, own = _message(1), _message(2, {"X-Extra": "yes", "Content-Type": "text/evil",
                                           "webhook-id": "forged", "Authorization": "mine"})
    results = _attempts(dest, [plain, own, _message(3)], prepare)
    sent = server.wait_for(3)
    for result, req, message in zip(results, sent, (plain, own, _message(3))):
        assert result.ok, result.error
        verify(secret, req)  # each attempt signed over its own id, timestamp and body
        assert req.headers["webhook-id"] == message.id
        assert req.headers["Authorization"] == f"Bearer {token}"  # the destination's auth wins
        assert req.headers["X-Team"] == "ops" and req.headers["X-Key"] == token
        assert req.headers["Content-Type"] == "application/json"
        assert req.headers["X-Request-Id"] == result.request_id
        record = result.request_headers
        assert record["Authorization"] == "********" and record["X-Key"] == "********"
        assert token not in json.dumps(record) and secret not in json.dumps(record)
        assert record["webhook-id"] == message.id
        assert record["webhook-signature"] == req.headers["webhook-signature"]
    assert sent[1].headers["X-Extra"] == "yes" and results[1].request_headers["X-Extra"] == "yes"
    assert "X-Extra" not in sent[0].headers and "X-Extra" not in results[2].request_headers
    # nothing of one attempt leaks into the next through what is prepared once per destination
    assert results[0].request_headers is not results[2].request_headers
    assert results[0].request_headers["X-Request-Id"] != results[2].request_headers["X-Request-Id"]
    prepared = prepare(dest)
    for fixed in (prepared.with_auth, prepared.with_auth_record, prepared.headers, prepared.header_record):
        assert not {"webhook-id", "webhook-signature", "X-Request-Id", "X-Extra"} & set(fixed)
    assert prepared.timeout == 7.0 and prepared.verify_tls


def test_a_changed_destination_is_prepared_again(setup):
    server, dest, prepare, secret, token = setup
    first = prepare(dest)
    changed = Destination("hook", True, {**dest.spec, "timeout": "2s", "allow_insecure": True,
                                         "headers": {"X-Team": "dev"}})
    again = prepare(changed)
    assert again is not first
    assert (again.timeout, again.verify_tls, again.with_auth["X-Team"]) == (2.0, False, "dev")
    assert (first.timeout, first.verify_tls, first.with_auth["X-Team"]) == (7.0, True, "ops")


def test_per_destination_timeout_is_the_requests(receiver):  # noqa: F811 (fixture)
    slow = receiver([Reply(200, b"late", delay=5)])
    dest = Destination("hook", True, {"url": slow.url, "timeout": "0.3s"})
    result, = _attempts(dest, [_message(1)], Preparer(lambda v: v, Redactor()))
    assert not result.ok and result.error == "no response within 0.3s (timeout)"
    assert decide(result, WebhookSettings(), 2, result.started_at).status == "pending"


@pytest.mark.parametrize("headers", [
    None, {}, {"A": "b"}, {"Content-Type": "application/json", "webhook-id": "msg_1"},
    {"X-Ü": "naïve ☃", "q": 'say "hi" \\ \n\t\x01'}, {"n": 1, "f": 1.5, "none": None, "t": True},
    {"nested": {"a": [1, "x"]}}, {1: "int key"}, {"a": "x", "b": 2},
    [["X-A", "1"]], "X-A: 1",  # not a mapping (a plugin's own rows): stored as json.dumps stores them
])
def test_headers_json_is_json_dumps(headers):
    assert headers_json(headers) == json.dumps(headers or {})
    assert json.loads(headers_json(headers)) == json.loads(json.dumps(headers or {}))


def test_a_value_another_thread_is_still_adding_is_redacted_once_add_returns():
    """Two runs resolve the same secret at once: the second one's ``add`` must not return
    (and its error text be redacted) before the value is among those redacted."""
    import threading

    in_sort, go_on = threading.Event(), threading.Event()

    class SlowToSort(str):  # holds the first thread while it orders the values
        calls = 0

        def __len__(self):
            SlowToSort.calls += 1
            if SlowToSort.calls == 3:  # the truth test, the length test, then the sort's key
                in_sort.set()
                go_on.wait(10)
            return str.__len__(self)

    redact, seen = Redactor(), []
    first = threading.Thread(target=redact.add, args=(SlowToSort("tok-12345"),))
    first.start()
    assert in_sort.wait(10)

    def second():
        redact.add("tok-12345")
        seen.append(redact("401: bad token tok-12345"))

    other = threading.Thread(target=second)
    other.start()
    other.join(1.0)  # returns at once when it does not wait for the first
    go_on.set()
    first.join(10)
    other.join(10)
    assert seen == ["401: bad token ********"]


def test_redactor_learns_values_after_use():
    redact = Redactor()
    assert redact("nothing yet: hunter2-long") == "nothing yet: hunter2-long"
    redact.add("hunter2")
    assert redact("pw hunter2-long") == "pw ********-long"
    redact.add("hunter2-long")  # longer values first, also when added later
    assert redact("pw hunter2-long and hunter2") == "pw ******** and ********"
    redact.add("hunter2")  # again: nothing changes
    redact.add("ab")  # too short to be redacted anywhere
    assert redact("ab hunter2") == "ab ********"
    assert redact(42) == 42 and redact.scrub({"k": ["hunter2"]}) == {"k": ["********"]}


def test_a_2xx_whose_body_outlasts_the_deadline_is_delivered():
    from tests.test_webhook_hardening import SlowBodyServer

    server = SlowBodyServer(hold=3)
    try:  # the deadline (0.4 s) falls while the excerpt is read (which may take 2 s)
        dest = Destination("hook", True, {"url": f"http://127.0.0.1:{server.port}/hook", "timeout": 0.4})
        result, = _attempts(dest, [_message(1)], Preparer(lambda v: v, Redactor()))
    finally:
        server.close()
    assert (result.ok, result.status_code, result.error, result.excerpt) == (True, 200, None, "hello")
