"""STARTTLS, implicit TLS and AUTH against a real aiosmtpd server with a certificate made here."""

from __future__ import annotations

import secrets

import pytest

from taskengine_email.action import send_email
from taskengine_core.errors import ActionError
from tests.test_email_support import (authenticator, certificate, context,  # noqa: F401
                                      server_tls_context, smtp_server)

BASIC = {"to": "alice@example.com", "subject": "Hello", "text": "over TLS\n"}


def send(settings: dict) -> dict:
    return send_email(BASIC, context(settings=settings))


def fails(settings: dict) -> ActionError:
    with pytest.raises(ActionError) as info:
        send(settings)
    return info.value


@pytest.fixture
def starttls_server(smtp_server, certificate):
    return smtp_server(tls_context=server_tls_context(certificate), require_starttls=True,
                       authenticator=authenticator({"mailer": "correct horse"}))


def test_starttls_with_the_test_ca(starttls_server, certificate):
    out = send(starttls_server.settings(security="starttls", ca_file=str(certificate[0])))
    [got] = starttls_server.mailbox.delivered
    assert got.tls is True and got.login is None
    assert out["accepted"] == ["alice@example.com"]


def test_starttls_refuses_an_untrusted_certificate(starttls_server):
    error = fails(starttls_server.settings(security="starttls"))  # system CAs only
    assert str(error).startswith(f"TLS certificate of SMTP server 127.0.0.1:{starttls_server.port}"
                                 " not trusted: ")
    assert "settings.email.ca_file" in str(error)
    assert error.retryable is False and starttls_server.mailbox.delivered == []


def test_verify_tls_false_accepts_any_certificate(starttls_server):
    send(starttls_server.settings(security="starttls", verify_tls=False))
    assert starttls_server.mailbox.delivered[0].tls is True


def test_starttls_is_required_not_opportunistic(smtp_server, certificate):
    plain = smtp_server()  # offers no STARTTLS
    error = fails(plain.settings(security="starttls", ca_file=str(certificate[0])))
    assert str(error) == (f"SMTP server 127.0.0.1:{plain.port} does not offer STARTTLS; set "
                          "settings.email.security to ssl or none")
    assert error.retryable is False and plain.mailbox.delivered == []


def test_missing_ca_file_is_a_permanent_error(starttls_server, tmp_path):
    error = fails(starttls_server.settings(security="starttls", ca_file=str(tmp_path / "no.pem")))
    assert str(error).startswith("settings.email.ca_file ")
    assert error.retryable is False


def test_implicit_tls(smtp_server, certificate):
    server = smtp_server(ssl_context=server_tls_context(certificate))
    send(server.settings(security="ssl", ca_file=str(certificate[0])))
    [got] = server.mailbox.delivered
    assert got.message["Subject"] == "Hello" and got.rcpt_tos == ["alice@example.com"]


def test_implicit_tls_against_a_plain_port_says_what_to_check(smtp_server, certificate):
    plain = smtp_server()
    error = fails(plain.settings(security="ssl", ca_file=str(certificate[0])))
    assert f"TLS with SMTP server 127.0.0.1:{plain.port} failed while connecting" in str(error)
    assert "settings.email.security" in str(error) and error.retryable is False


def test_auth_over_starttls(starttls_server, certificate):
    send(starttls_server.settings(security="starttls", ca_file=str(certificate[0]),
                                  username="mailer", password="correct horse"))
    [got] = starttls_server.mailbox.delivered
    assert got.login == "mailer" and got.tls is True


def test_auth_failure_is_permanent_and_never_shows_the_password(starttls_server, certificate):
    password = "pw-" + secrets.token_hex(8)
    error = fails(starttls_server.settings(security="starttls", ca_file=str(certificate[0]),
                                           username="mailer", password=password))
    assert str(error) == (f"SMTP server 127.0.0.1:{starttls_server.port} rejected the login of "
                          "user 'mailer': 535 5.7.8 Authentication credentials invalid; check "
                          "settings.email.username and password")
    assert error.retryable is False
    assert password not in repr(error.__dict__) and error.__cause__ is None
    assert starttls_server.mailbox.delivered == []


def test_auth_without_tls_is_refused_by_the_server_with_a_hint(starttls_server):
    error = fails(starttls_server.settings(security="none", username="mailer",
                                           password="correct horse"))
    # aiosmtpd offers AUTH only after STARTTLS (and here requires STARTTLS before MAIL)
    assert "does not offer AUTH" in str(error) and "after STARTTLS" in str(error)
    assert error.retryable is False


def test_username_without_password_is_a_configuration_error(starttls_server, certificate):
    error = fails(starttls_server.settings(security="starttls", ca_file=str(certificate[0]),
                                           username="mailer"))
    assert "settings.email.username is set but password is not" in str(error)
    assert error.retryable is False
