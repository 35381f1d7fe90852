"""Talking to the SMTP server, and turning each way it can fail into a classified ActionError.

Classification: a 5xx reply is permanent (``retryable=False``: sending again cannot help); a
4xx reply, a refused or dropped connection and a timeout are temporary (``retryable=True``: the
engine retries per the task's ``retry`` policy). Misconfiguration the server reveals (no
STARTTLS, no AUTH, a certificate that does not verify) is permanent. Messages name the server
and never contain the password.
"""

from __future__ import annotations

import smtplib
import socket
import ssl
from dataclasses import dataclass
from email.message import EmailMessage

from taskengine_core.errors import ActionError
from taskengine_core.secrets import REDACTED

from .schema import DEFAULT_PORTS, DEFAULT_TIMEOUT


@dataclass(frozen=True)
class Server:
    """The resolved ``settings.email`` connection part."""

    host: str
    port: int
    security: str = "starttls"
    username: str | None = None
    password: str | None = None
    timeout: float = DEFAULT_TIMEOUT
    verify_tls: bool = True
    ca_file: str | None = None
    helo: str | None = None

    @classmethod
    def from_settings(cls, settings: dict) -> "Server":
        security = settings.get("security", "starttls")
        return cls(host=settings["host"], port=int(settings.get("port") or DEFAULT_PORTS[security]),
                   security=security, username=settings.get("username"),
                   password=settings.get("password"),
                   timeout=float(settings.get("timeout", DEFAULT_TIMEOUT)),
                   verify_tls=bool(settings.get("verify_tls", True)),
                   ca_file=settings.get("ca_file"), helo=settings.get("helo"))

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"

    def __repr__(self) -> str:  # keep the password out of any accidental repr in a traceback
        return f"Server({self.where}, security={self.security}, username={self.username!r})"


def deliver(server: Server, msg: EmailMessage, sender: str, recipients: list[str],
            timeout: float) -> dict[str, str]:
    """Send ``msg`` from ``sender`` to ``recipients``; return the refused recipients
    (``{address: "550 reason"}``) when the server accepted the message for the others.

    :raises ActionError: when nothing was delivered, classified as described above.
    """
    try:
        return _deliver(server, msg, sender, recipients, timeout)
    except ActionError as exc:
        raise ActionError(_scrub(str(exc), server), retryable=exc.retryable,
                          output=exc.output) from None


def _deliver(server: Server, msg: EmailMessage, sender: str, recipients: list[str],
             timeout: float) -> dict[str, str]:
    where = server.where
    if server.username and server.password is None:
        raise ActionError(f"settings.email.username is set but password is not (SMTP server "
                          f"{where}); add password: ${{env:NAME}}", retryable=False)
    context = _tls_context(server) if server.security != "none" else None
    smtp = _connect(server, context, timeout)
    try:
        if server.security == "starttls":
            smtp.ehlo()
            if not smtp.has_extn("starttls"):
                raise ActionError(f"SMTP server {where} does not offer STARTTLS; set "
                                  "settings.email.security to ssl or none", retryable=False)
            smtp.starttls(context=context)
            smtp.ehlo()
        if server.username:
            _login(smtp, server)
        refused = smtp.send_message(msg, from_addr=sender, to_addrs=recipients)
    except smtplib.SMTPRecipientsRefused as exc:
        refusals = {addr: _reply(code, text) for addr, (code, text) in exc.recipients.items()}
        listed = "; ".join(f"{addr}: {reply}" for addr, reply in refusals.items())
        noun = "recipient" if len(refusals) == 1 else "every recipient"
        temporary = any(_is_temporary(code) for code, _ in exc.recipients.values())
        raise ActionError(f"SMTP server {where} refused {noun} {listed}", retryable=temporary,
                          output={"refused": refusals}) from None
    except smtplib.SMTPSenderRefused as exc:
        raise _classified(exc.smtp_code, f"SMTP server {where} refused sender {sender}: "
                          f"{_reply(exc.smtp_code, exc.smtp_error)}") from None
    except smtplib.SMTPDataError as exc:
        raise _classified(exc.smtp_code, f"SMTP server {where} rejected the message: "
                          f"{_reply(exc.smtp_code, exc.smtp_error)}") from None
    except (smtplib.SMTPResponseException, smtplib.SMTPServerDisconnected,
            smtplib.SMTPNotSupportedError, OSError) as exc:
        raise _failure(exc, where, "while sending", timeout) from None
    finally:
        _close(smtp)
    return {addr: _reply(code, text) for addr, (code, text) in refused.items()}


def _connect(server: Server, context: ssl.SSLContext | None, timeout: float) -> smtplib.SMTP:
    try:
        if server.security == "ssl":
            return smtplib.SMTP_SSL(server.host, server.port, local_hostname=server.helo,
                                    timeout=timeout, context=context)
        return smtplib.SMTP(server.host, server.port, local_hostname=server.helo, timeout=timeout)
    except (smtplib.SMTPResponseException, smtplib.SMTPServerDisconnected, OSError) as exc:
        raise _failure(exc, server.where, "while connecting", timeout) from None


def _login(smtp: smtplib.SMTP, server: Server) -> None:
    where, user = server.where, server.username
    try:
        smtp.login(user, server.password or "")
    except smtplib.SMTPAuthenticationError as exc:
        raise _classified(exc.smtp_code, f"SMTP server {where} rejected the login of user "
                          f"{user!r}: {_reply(exc.smtp_code, exc.smtp_error)}; check "
                          "settings.email.username and password") from None
    except smtplib.SMTPNotSupportedError:
        hint = " (many servers offer it only after STARTTLS)" if server.security == "none" else ""
        raise ActionError(f"SMTP server {where} does not offer AUTH, but settings.email.username "
                          f"is set{hint}", retryable=False) from None
    except smtplib.SMTPException as exc:
        if isinstance(exc, (smtplib.SMTPResponseException, smtplib.SMTPServerDisconnected)):
            raise
        # "No suitable authentication method found."
        raise ActionError(f"SMTP server {where}: cannot log in as {user!r}: {exc}",
                          retryable=False) from None


def _tls_context(server: Server) -> ssl.SSLContext:
    try:
        context = ssl.create_default_context(cafile=server.ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise ActionError(f"settings.email.ca_file {server.ca_file!r} cannot be used: "
                          f"{getattr(exc, 'strerror', None) or exc}", retryable=False) from None
    if not server.verify_tls:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _failure(exc: BaseException, where: str, when: str, timeout: float) -> ActionError:
    """Connection-level failures and stray replies, classified."""
    if isinstance(exc, smtplib.SMTPResponseException):
        return _classified(exc.smtp_code, f"SMTP server {where} answered "
                           f"{_reply(exc.smtp_code, exc.smtp_error)} {when}")
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return ActionError(f"SMTP server {where}: {exc}", retryable=False)
    if isinstance(exc, ssl.SSLCertVerificationError):
        return ActionError(f"TLS certificate of SMTP server {where} not trusted: "
                           f"{exc.verify_message}; set settings.email.ca_file to its CA, or "
                           "verify_tls: false", retryable=False)
    if isinstance(exc, (ssl.SSLEOFError, ssl.SSLZeroReturnError)):
        return ActionError(f"SMTP server {where} closed the TLS connection {when}",
                           retryable=True)
    if isinstance(exc, ssl.SSLError):
        return ActionError(f"TLS with SMTP server {where} failed {when}: {exc.reason or exc}; "
                           "check that settings.email.security (ssl or starttls) matches "
                           "the port", retryable=False)
    if isinstance(exc, smtplib.SMTPServerDisconnected) and isinstance(exc.__context__, OSError):
        exc = exc.__context__  # smtplib reports a read timeout or reset as a disconnection
    if isinstance(exc, TimeoutError):
        return ActionError(f"SMTP server {where} did not answer within {round(timeout, 2):g}s {when}",
                           retryable=True)
    if isinstance(exc, ConnectionRefusedError):
        return ActionError(f"cannot connect to SMTP server {where}: connection refused",
                           retryable=True)
    if isinstance(exc, socket.gaierror):
        return ActionError(f"cannot resolve SMTP server {where}: {exc.strerror}", retryable=True)
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return ActionError(f"SMTP server {where} closed the connection {when}", retryable=True)
    return ActionError(f"SMTP server {where}: {type(exc).__name__}: "
                       f"{getattr(exc, 'strerror', None) or exc} {when}", retryable=True)


def _classified(code: int, message: str) -> ActionError:
    return ActionError(message, retryable=_is_temporary(code))


def _is_temporary(code: int) -> bool:
    """5xx is permanent; 4xx, and anything that is not an SMTP reply (-1), may pass."""
    return not 500 <= int(code) <= 599


def _reply(code: int, text: bytes | str) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    return f"{code} {' '.join(str(text).split())}".strip()


def _close(smtp: smtplib.SMTP) -> None:
    # after the server accepted the message, a failing QUIT must not turn success into failure
    try:
        smtp.quit()
    except (smtplib.SMTPException, OSError):
        pass
    finally:
        smtp.close()


def _scrub(text: str, server: Server) -> str:
    if server.password and len(server.password) >= 3:
        text = text.replace(server.password, REDACTED)
    return text
