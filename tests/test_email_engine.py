"""The whole path: rule file -> event -> run -> email.send -> aiosmtpd, retries included."""

from __future__ import annotations

import json
import secrets
import sqlite3

import pytest
from aiosmtpd.smtp import AuthResult

from taskengine_core.engine import Engine
from tests.test_email_support import (SENDER, Mailbox, certificate, free_port,  # noqa: F401
                                      server_tls_context, smtp_server)


def rules(port: int, *, retry: str = "{attempts: 3, backoff: 0.1}", settings: bool = True,
          **email) -> str:
    email = {"host": "127.0.0.1", "port": port, "security": "none", "sender": SENDER,
             "sender_name": "Task Engine", "timeout": 5, **email}
    block = f"""
        settings:
          email: {json.dumps(email)}
    """ if settings else ""
    return block + f"""
        tasks:
          welcome:
            action: email.send
            with:
              to: "{{{{ event.data.email }}}}"
              bcc: "audit@example.com; {{{{ event.data.manager }}}}"
              subject: "Welcome {{{{ event.data.user }}}}"
              text: "Hello {{{{ event.data.user }}}}, this is run {{{{ run.id }}}}."
              html: "<p>Hello <b>{{{{ event.data.user }}}}</b></p>"
            retry: {retry}
        events:
          signup: {{on: user.signup, tasks: [welcome]}}
    """


SIGNUP = {"user": "alice", "email": "alice@example.com", "manager": "boss@example.com"}


@pytest.fixture
def engine(db_path):
    made = []

    def make() -> Engine:
        made.append(Engine(db_path))
        made[-1].executor.start()
        return made[-1]

    yield make
    for one in made:
        one.executor.stop(0)


def one_run(db_path) -> tuple[dict, list[dict]]:
    conn = sqlite3.connect(db_path)
    conn.row_factory = sqlite3.Row
    (run,) = [dict(r) for r in conn.execute("SELECT * FROM runs WHERE task = 'welcome'")]
    attempts = [dict(r) for r in conn.execute(
        "SELECT * FROM attempts WHERE run_id = ? ORDER BY number", (run["id"],))]
    conn.close()
    return run, attempts


def test_templated_send_through_the_engine(applied, engine, smtp_server, db_path):
    server = smtp_server()
    applied(rules(server.port))
    engine_ = engine()
    engine_.emit("user.signup", SIGNUP)
    engine_.run_until_idle()
    run, attempts = one_run(db_path)
    assert run["status"] == "succeeded" and [a["outcome"] for a in attempts] == ["succeeded"]
    [got] = server.mailbox.delivered
    assert got.rcpt_tos == ["alice@example.com", "audit@example.com", "boss@example.com"]
    assert got.message["Subject"] == "Welcome alice" and got.message["To"] == "alice@example.com"
    text, html = got.message.iter_parts()
    assert text.get_content() == f"Hello alice, this is run {run['id']}.\n"
    assert html.get_content() == "<p>Hello <b>alice</b></p>\n"
    message_id = f"<{run['id']}.taskengine@example.org>"
    assert got.message["Message-ID"] == message_id
    assert json.loads(run["output"]) == {"message_id": message_id, "accepted": got.rcpt_tos,
                                         "refused": {}}


def test_a_4xx_is_retried_and_the_retry_is_the_same_message(applied, engine, smtp_server, db_path):
    server = smtp_server(Mailbox(data_replies=["451 4.3.0 try again later"]))
    applied(rules(server.port))
    engine_ = engine()
    engine_.emit("user.signup", SIGNUP)
    engine_.run_until_idle()
    run, attempts = one_run(db_path)
    assert run["status"] == "succeeded"
    assert [a["outcome"] for a in attempts] == ["failed", "succeeded"]
    assert attempts[0]["error"] == (f"SMTP server 127.0.0.1:{server.port} rejected the message: "
                                    "451 4.3.0 try again later")
    [first] = server.mailbox.rejected
    [delivered] = server.mailbox.delivered
    assert first.message["Message-ID"] == delivered.message["Message-ID"] \
        == f"<{run['id']}.taskengine@example.org>"


def test_a_5xx_fails_at_once_without_retry(applied, engine, smtp_server, db_path):
    server = smtp_server(Mailbox(data_replies=["550 5.7.1 message refused as spam"]))
    applied(rules(server.port))
    engine_ = engine()
    engine_.emit("user.signup", SIGNUP)
    engine_.run_until_idle()
    run, attempts = one_run(db_path)
    assert run["status"] == "failed" and len(attempts) == 1
    assert run["error"] == (f"SMTP server 127.0.0.1:{server.port} rejected the message: "
                            "550 5.7.1 message refused as spam")
    assert len(server.mailbox.rejected) == 1 and server.mailbox.delivered == []


def test_connection_refused_is_retried_until_attempts_run_out(applied, engine, db_path):
    port = free_port()
    applied(rules(port, retry="{attempts: 2, backoff: 0.05}"))
    engine_ = engine()
    engine_.emit("user.signup", SIGNUP)
    engine_.run_until_idle()
    run, attempts = one_run(db_path)
    assert run["status"] == "failed" and [a["outcome"] for a in attempts] == ["failed", "failed"]
    assert run["error"] == f"cannot connect to SMTP server 127.0.0.1:{port}: connection refused"


def test_missing_settings_fails_once_with_a_clear_message(applied, engine, db_path):
    applied(rules(0, settings=False))
    engine_ = engine()
    engine_.emit("user.signup", SIGNUP)
    engine_.run_until_idle()
    run, attempts = one_run(db_path)
    assert run["status"] == "failed" and len(attempts) == 1
    assert run["error"].startswith("email.send needs settings.email (host, sender)")


def test_unknown_email_setting_is_refused_at_validate(run_cli, write_rules):
    path = write_rules(rules(25, pasword="oops"))
    result = run_cli("validate", path)
    assert result.exit_code == 1
    assert "settings.email" in result.stderr and "pasword" in result.stderr


def test_auth_failure_keeps_the_password_out_of_errors_logs_and_the_database(
        applied, engine, smtp_server, certificate, db_path, monkeypatch, caplog, run_cli):
    canary = "canary-" + secrets.token_hex(12)
    monkeypatch.setenv("SMTP_PASSWORD", canary)

    def echoing(server, session, envelope, mechanism, auth_data):
        # a careless server that repeats what it got: the password must still not leak
        return AuthResult(success=False, handled=False,
                          message=f"535 5.7.8 bad password {auth_data.password.decode()}")

    server = smtp_server(tls_context=server_tls_context(certificate), authenticator=echoing)
    applied(rules(server.port, security="starttls", ca_file=str(certificate[0]),
                  username="mailer", password="${env:SMTP_PASSWORD}"))
    engine_ = engine()
    engine_.emit("user.signup", SIGNUP)
    engine_.run_until_idle()
    run, attempts = one_run(db_path)
    assert run["status"] == "failed" and len(attempts) == 1  # 535: no retry
    assert run["error"].startswith(f"SMTP server 127.0.0.1:{server.port} rejected the login of "
                                   "user 'mailer': 535 5.7.8 bad password ********")
    shown = run_cli("logs", "show", run["id"])
    assert "rejected the login of user 'mailer'" in shown.stdout
    engine_.store.close()
    stored = b"".join(p.read_bytes() for p in db_path.parent.glob(db_path.name + "*"))
    for text in (shown.stdout, shown.stderr, caplog.text, stored.decode("latin-1")):
        assert canary not in text
