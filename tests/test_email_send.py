"""``email.send`` and the ``email`` notifier against a real aiosmtpd server (no TLS here)."""

from __future__ import annotations

import json
import socket

import pytest
from jsonschema import Draft202012Validator

import taskengine_email
from taskengine_email.action import send_email
from taskengine_core.errors import ActionError
from tests.test_email_support import SENDER, Mailbox, context, free_port, smtp_server  # noqa: F401

BASIC = {"to": "alice@example.com", "subject": "Hello", "text": "Body text\n"}


def send(server, params=None, run_id="run-1", **settings):
    return send_email(params or BASIC, context(run_id, server.settings(**settings)))


def fails(server, params=None, **settings) -> ActionError:
    with pytest.raises(ActionError) as info:
        send(server, params, **settings)
    return info.value


# --- registration ---------------------------------------------------------------------------


def test_register_settings():
    calls = []
    taskengine_email.register_settings(register=lambda *a, **k: calls.append(a))
    [(name, schema)] = calls
    assert name == "email"
    Draft202012Validator.check_schema(schema)
    assert schema["additionalProperties"] is False
    assert set(schema["properties"]) == {"host", "port", "security", "username", "password",
                                         "sender", "sender_name", "timeout", "verify_tls",
                                         "ca_file", "helo"}


def test_register_actions():
    calls = []
    taskengine_email.register_actions(register=lambda *a, **k: calls.append((a, k)))
    [((name, func), kwargs)] = calls
    assert (name, func) == ("email.send", send_email)
    validator = Draft202012Validator(kwargs["schema"])
    assert validator.is_valid({"to": ["a@x.org"], "subject": "s", "text": "t"})
    assert validator.is_valid({"bcc": "a@x.org; b@x.org", "subject": "s", "text": "t"})
    assert not validator.is_valid({"subject": "s", "text": "t"})  # no recipient at all
    assert not validator.is_valid({**BASIC, "attachments": []})


def test_register_notifiers_and_discovery_through_the_entry_point(smtp_server):
    from taskengine_core.plugins import get_plugin_manager

    registry = get_plugin_manager().registry()
    assert registry.actions["email.send"].plugin.distribution == "taskengine-core"
    assert "email" in registry.settings
    server = smtp_server()
    notifier = registry.notifiers["email"].func
    out = notifier({"subject": "Disk full", "text": "on host1", "to": "ops@example.com",
                    "severity": "high"}, server.settings(sender_name="Task Engine"))
    [got] = server.mailbox.delivered
    assert got.rcpt_tos == ["ops@example.com"] and out["accepted"] == ["ops@example.com"]
    assert got.message["Subject"] == "Disk full"
    assert got.message["From"] == f"Task Engine <{SENDER}>"
    assert got.message["Message-ID"] == out["message_id"]
    assert got.message.get_content() == "on host1\n"


# --- a plain delivery -----------------------------------------------------------------------


def test_plain_delivery_headers_body_and_envelope(smtp_server):
    server = smtp_server()
    out = send(server, {"to": ["Alice A <alice@example.com>", "bob@example.com"],
                        "cc": "carol@example.com", "bcc": ["dave@example.com"],
                        "subject": "Report\nready", "text": "All good.\n",
                        "reply_to": "help@example.com", "headers": {"X-Run": "nightly"}},
               sender_name="Task Engine")
    [got] = server.mailbox.delivered
    assert got.mail_from == SENDER
    assert got.rcpt_tos == ["alice@example.com", "bob@example.com", "carol@example.com",
                            "dave@example.com"]
    msg = got.message
    assert msg["From"] == f"Task Engine <{SENDER}>"
    assert msg["To"] == "Alice A <alice@example.com>, bob@example.com"
    assert msg["Cc"] == "carol@example.com"
    assert msg["Bcc"] is None and b"dave@example.com" not in got.raw  # bcc: envelope only
    assert msg["Reply-To"] == "help@example.com"
    assert msg["Subject"] == "Report ready"  # a line break from data cannot split a header
    assert msg["X-Run"] == "nightly"
    assert msg["Date"] and msg["Date"].datetime is not None
    assert msg["Message-ID"] == "<run-1.taskengine@example.org>"
    assert msg.get_content_type() == "text/plain" and msg.get_content() == "All good.\n"
    assert out == {"message_id": "<run-1.taskengine@example.org>",
                   "accepted": got.rcpt_tos, "refused": {}}
    assert json.loads(json.dumps(out)) == out


def test_html_makes_multipart_alternative(smtp_server):
    server = smtp_server()
    send(server, {**BASIC, "text": "plain ünïcode", "html": "<p>rich</p>"})
    msg = server.mailbox.delivered[0].message
    assert msg.get_content_type() == "multipart/alternative"
    parts = [(p.get_content_type(), p.get_content()) for p in msg.iter_parts()]
    assert parts == [("text/plain", "plain ünïcode\n"), ("text/html", "<p>rich</p>\n")]


def test_semicolon_strings_are_split_and_duplicates_sent_once(smtp_server):
    server = smtp_server()
    out = send(server, {"to": " a@example.com; B <b@example.com> ;;", "cc": "A@example.com",
                        "bcc": "c@example.com;a@example.com", "subject": "s", "text": "t"})
    assert server.mailbox.delivered[0].rcpt_tos == ["a@example.com", "b@example.com",
                                                    "c@example.com"]
    assert server.mailbox.delivered[0].message["To"] == "a@example.com, B <b@example.com>"
    assert out["accepted"] == ["a@example.com", "b@example.com", "c@example.com"]


def test_message_id_is_the_same_on_every_attempt_of_a_run(smtp_server):
    server = smtp_server()
    settings = server.settings()
    for attempt in (1, 2):
        send_email(BASIC, context("0a1b2c3d4e5f6071", settings, attempt=attempt))
    send_email(BASIC, context("ffffffffffffffff", settings))
    ids = [r.message["Message-ID"] for r in server.mailbox.delivered]
    assert ids[0] == ids[1] == "<0a1b2c3d4e5f6071.taskengine@example.org>"
    assert ids[2] == "<ffffffffffffffff.taskengine@example.org>"


@pytest.mark.parametrize("params, message", [
    ({**BASIC, "to": "not-an-address"}, "email: 'to' has an invalid address 'not-an-address'"),
    ({**BASIC, "to": ";"}, "email: no recipients"),
    ({**BASIC, "headers": {"From": "x@y.z"}}, "email: header 'From' is set by email.send"),
    ({**BASIC, "headers": {"X-A": "a\r\nBcc: x@y.z"}}, "email: header 'X-A' must be one line"),
])
def test_bad_parameters_fail_before_connecting(params, message):
    settings = {"host": "127.0.0.1", "port": free_port(), "sender": SENDER, "security": "none"}
    with pytest.raises(ActionError) as info:
        send_email(params, context(settings=settings))
    assert str(info.value).startswith(message) and info.value.retryable is False


def test_missing_settings_is_a_clear_permanent_error():
    with pytest.raises(ActionError) as info:
        send_email(BASIC, context(settings={}))
    assert str(info.value).startswith("email.send needs settings.email (host, sender)")
    assert info.value.retryable is False


# --- SMTP failures, classified ----------------------------------------------------------------


def test_refused_recipient_is_permanent_and_named(smtp_server):
    server = smtp_server(Mailbox(refuse={"bob@example.com": "550 no such user"}))
    error = fails(server, {**BASIC, "to": "bob@example.com"})
    assert str(error) == (f"SMTP server 127.0.0.1:{server.port} refused recipient "
                          "bob@example.com: 550 no such user")
    assert error.retryable is False and server.mailbox.delivered == []


def test_all_recipients_refused_with_a_4xx_is_retryable(smtp_server):
    server = smtp_server(Mailbox(refuse={"a@example.com": "550 no such user",
                                         "b@example.com": "450 mailbox busy"}))
    error = fails(server, {**BASIC, "to": "a@example.com; b@example.com"})
    assert "refused every recipient a@example.com: 550 no such user; " \
           "b@example.com: 450 mailbox busy" in str(error)
    assert error.retryable is True  # nobody got it, so trying again duplicates nothing
    assert error.output == {"refused": {"a@example.com": "550 no such user",
                                        "b@example.com": "450 mailbox busy"}}


def test_partial_refusal_succeeds_and_lists_the_refused(smtp_server, caplog):
    server = smtp_server(Mailbox(refuse={"bob@example.com": "550 5.1.1 no such user"}))
    out = send(server, {**BASIC, "to": ["alice@example.com", "bob@example.com"]})
    assert server.mailbox.delivered[0].rcpt_tos == ["alice@example.com"]
    assert out["accepted"] == ["alice@example.com"]
    assert out["refused"] == {"bob@example.com": "550 5.1.1 no such user"}
    assert "refused bob@example.com: 550 5.1.1 no such user" in caplog.text


@pytest.mark.parametrize("reply, retryable", [("554 5.6.0 message rejected", False),
                                              ("451 4.3.0 try again later", True)])
def test_data_rejection_is_classified_by_its_code(smtp_server, reply, retryable):
    server = smtp_server(Mailbox(data_replies=[reply]))
    error = fails(server)
    assert str(error) == f"SMTP server 127.0.0.1:{server.port} rejected the message: {reply}"
    assert error.retryable is retryable


def test_connection_refused_is_retryable():
    port = free_port()  # nothing listens here any more
    settings = {"host": "127.0.0.1", "port": port, "security": "none", "sender": SENDER}
    with pytest.raises(ActionError) as info:
        send_email(BASIC, context(settings=settings))
    error = info.value
    assert str(error) == f"cannot connect to SMTP server 127.0.0.1:{port}: connection refused"
    assert error.retryable is True


def test_a_server_that_never_answers_times_out_retryably():
    with socket.socket() as silent:  # accepts connections (backlog) but never greets
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        port = silent.getsockname()[1]
        settings = {"host": "127.0.0.1", "port": port, "security": "none", "sender": SENDER,
                    "timeout": 0.3}
        with pytest.raises(ActionError) as info:
            send_email(BASIC, context(settings=settings))
    assert str(info.value) == (f"SMTP server 127.0.0.1:{port} did not answer within 0.3s "
                               "while connecting")
    assert info.value.retryable is True


def test_the_task_time_limit_bounds_the_smtp_timeout():
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        settings = {"host": "127.0.0.1", "port": silent.getsockname()[1], "security": "none",
                    "sender": SENDER, "timeout": 30}
        with pytest.raises(ActionError) as info:
            send_email(BASIC, context(settings=settings, timeout=0.3))
    assert "did not answer within 0.3" in str(info.value)
