"""Shared by the email tests (no tests of its own): a real aiosmtpd server on 127.0.0.1 that
records what it receives and can be told to refuse, and a self-signed certificate made here."""

from __future__ import annotations

import datetime
import email
import email.policy
import ipaddress
import shutil
import socket
import ssl
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest

aiosmtpd = pytest.importorskip("aiosmtpd")
from aiosmtpd.controller import Controller  # noqa: E402
from aiosmtpd.smtp import AuthResult, LoginPassword  # noqa: E402

from taskengine_core.context import ActionContext  # noqa: E402

SENDER = "taskengine@example.org"


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message: email.message.EmailMessage
    raw: bytes
    login: str | None
    tls: bool


@dataclass
class Mailbox:
    """The server's handler: records messages; ``refuse`` recipients, script DATA replies."""

    refuse: dict[str, str] = field(default_factory=dict)  # address -> "550 no such user"
    data_replies: list[str] = field(default_factory=list)  # replies used before "250"
    delivered: list[Received] = field(default_factory=list)
    rejected: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        got = Received(envelope.mail_from, list(envelope.rcpt_tos),
                       email.message_from_bytes(envelope.content.replace(b"\r\n", b"\n"),
                                                 policy=email.policy.default),
                       envelope.content, _login(session), server._tls_protocol is not None)
        with self.lock:
            if self.data_replies:
                self.rejected.append(got)
                return self.data_replies.pop(0)
            self.delivered.append(got)
        return "250 Message accepted for delivery"


def _login(session) -> str | None:
    auth = getattr(session, "auth_data", None)
    return auth.login.decode() if isinstance(auth, LoginPassword) else None


def authenticator(users: dict[str, str]):
    """An aiosmtpd authenticator accepting exactly ``users`` (login -> password)."""

    def check(server, session, envelope, mechanism, auth_data):
        ok = (isinstance(auth_data, LoginPassword)
              and users.get(auth_data.login.decode()) == auth_data.password.decode())
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)

    return check


@dataclass
class SMTPServer:
    host: str
    port: int
    mailbox: Mailbox

    def settings(self, **extra) -> dict:
        return {"host": self.host, "port": self.port, "security": "none", "sender": SENDER,
                "timeout": 5, **extra}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def smtp_server():
    """``start(**aiosmtpd_kwargs)`` starts a server; all are stopped after the test."""
    started: list[Controller] = []

    def start(mailbox: Mailbox | None = None, **kwargs) -> SMTPServer:
        mailbox = mailbox or Mailbox()
        port = free_port()
        controller = Controller(mailbox, hostname="127.0.0.1", port=port, **kwargs)
        controller.start()
        started.append(controller)
        return SMTPServer("127.0.0.1", port, mailbox)

    yield start
    for controller in started:
        controller.stop()


@pytest.fixture(scope="session")
def certificate(tmp_path_factory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost: (cert.pem, key.pem)."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    try:
        _make_with_cryptography(cert, key)
    except ImportError:
        if shutil.which("openssl") is None:
            pytest.skip("neither the cryptography package nor openssl is available")
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=localhost",
             "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
             "-addext", "basicConstraints=critical,CA:TRUE"],
            check=True, capture_output=True)
    return cert, key


def _make_with_cryptography(cert_path: Path, key_path: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski),
                       critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))


def server_tls_context(certificate) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*map(str, certificate))
    return context


def context(run_id: str = "run-1", settings: dict | None = None, **kwargs) -> ActionContext:
    return ActionContext(run_id=run_id, task="mail", settings=settings or {}, **kwargs)
