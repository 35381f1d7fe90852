"""user.disable / user.enable with the vergeos backend, against a contract server on 127.0.0.1
implementing the documented calls: GET /api/v4/users?filter=name eq '...', GET and PUT
/api/v4/users/{key} with `enabled`, Bearer API keys."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

TOKEN = "verge-api-key-123"


class VergeOS:
    """The contract server's state and what it was asked."""

    def __init__(self):
        self.users = {1: {"$key": 1, "name": "admin", "enabled": True},
                      7: {"$key": 7, "name": "carol", "enabled": True},
                      8: {"$key": 8, "name": "dan", "enabled": False}}
        self.requests: list[tuple[str, str, dict | None]] = []
        self.fail_with: int | None = None


def serve(state: VergeOS, tls=None):
    """Start the contract server for ``state`` (HTTPS with the ``tls`` server context)."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def _send(self, status, body=None):
            data = json.dumps(body).encode() if body is not None else b""
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _handle(self, method):
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            url = urlsplit(self.path)
            state.requests.append((method, self.path, body))
            if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                return self._send(401, {"err": "Unauthorized"})
            if state.fail_with:
                return self._send(state.fail_with, {"err": "busy"})
            fields = parse_qs(url.query).get("fields", [""])[0].split(",")
            pick = lambda u: {k: v for k, v in u.items() if k in fields} if fields != [""] else u  # noqa: E731
            if url.path == "/api/v4/users" and method == "GET":
                wanted = parse_qs(url.query).get("filter", [""])[0]
                rows = [pick(u) for u in state.users.values() if wanted == f"name eq '{u['name']}'"]
                return self._send(200, rows)
            if url.path.startswith("/api/v4/users/"):
                user = state.users.get(int(url.path.rsplit("/", 1)[1]))
                if user is None:
                    return self._send(404, {"err": "not found"})
                if method == "GET":
                    return self._send(200, pick(user))
                if method == "PUT" and isinstance(body, dict) and isinstance(body.get("enabled"), bool):
                    user["enabled"] = body["enabled"]
                    return self._send(200, {"$key": user["$key"]})
            return self._send(400, {"err": "bad request"})

        def do_GET(self):
            self._handle("GET")

        def do_PUT(self):
            self._handle("PUT")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"{'https' if tls else 'http'}://127.0.0.1:{server.server_address[1]}"
    return server


@pytest.fixture
def verge():
    state = VergeOS()
    server = serve(state)
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture
def run(verge, write_rules, run_cli, monkeypatch):
    monkeypatch.setenv("VERGE_TOKEN", TOKEN)

    def apply(extra="allow_insecure: true"):
        rules = write_rules(f"""
            settings:
              user:
                backend: vergeos
                vergeos: {{url: "{verge.url}", token: "${{env:VERGE_TOKEN}}", {extra}}}
            tasks:
              disable: {{action: user.disable, with: {{user: carol}}}}
              enable: {{action: user.enable, with: {{user: carol}}}}
            """)
        assert run_cli("apply", rules).exit_code == 0

    def invoke(task, *params):
        result = run_cli("tasks", "run", task, "--json", *[a for p in params for a in ("--param", p)])
        assert TOKEN not in result.output
        return result.exit_code, json.loads(result.stdout)

    apply()
    invoke.apply = apply
    return invoke


def test_disable_reads_state_puts_enabled_false_and_confirms(verge, run):
    code, result = run("disable")
    assert code == 0 and result["output"]["changed"] is True and result["output"]["enabled"] is False
    assert verge.users[7]["enabled"] is False
    assert [r[:1] + (r[2],) for r in verge.requests] == [("GET", None), ("PUT", {"enabled": False}), ("GET", None)]
    assert verge.requests[1][1] == "/api/v4/users/7"
    verge.requests.clear()
    code, result = run("disable")
    assert code == 0 and result["output"]["changed"] is False
    assert [r[0] for r in verge.requests] == ["GET"]  # read only: already disabled


def test_enable_an_already_enabled_and_a_disabled_user(verge, run):
    code, result = run("enable")
    assert code == 0 and result["output"]["changed"] is False
    code, result = run("enable", "user=dan")
    assert code == 0 and result["output"]["changed"] is True and verge.users[8]["enabled"] is True


def test_the_built_in_admin_is_refused_unless_allowed(verge, run):
    code, result = run("disable", "user=admin")
    assert code == 1 and "refusing to disable system account 'admin'" in result["error"]
    assert verge.users[1]["enabled"] is True and not [r for r in verge.requests if r[0] == "PUT"]
    code, result = run("disable", "user=admin", "allow_system=true")
    assert code == 0 and verge.users[1]["enabled"] is False


@pytest.mark.parametrize("name", ["carol' or name ne '", "-x", "a b"])
def test_names_that_could_break_the_filter_are_refused(verge, run, name):
    code, result = run("disable", f"user={name}")
    assert code == 1 and "not a valid vergeos user name" in result["error"]
    assert verge.requests == []


def test_errors_name_what_to_check(verge, run, monkeypatch):
    code, result = run("disable", "user=nobody")
    assert code == 1 and "no user 'nobody' on http://127.0.0.1" in result["error"]
    verge.fail_with = 503
    code, result = run("disable")
    assert code == 1 and "503" in result["error"]
    verge.fail_with = None
    monkeypatch.setenv("VERGE_TOKEN", "wrong")
    code, result = run("disable")
    assert code == 1 and "401; check the API key" in result["error"]


def test_plain_http_is_refused_without_allow_insecure(verge, run):
    run.apply(extra="verify_tls: true")
    code, result = run("disable")
    assert code == 1 and "is not https" in result["error"] and "allow_insecure" in result["error"]
    assert verge.requests == []


def test_https_with_a_private_ca_and_a_refused_unknown_certificate(tmp_path, write_rules, run_cli, monkeypatch):
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
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    state = VergeOS()
    server = serve(state, tls=context)
    monkeypatch.setenv("VERGE_TOKEN", TOKEN)
    try:
        for ca, expected in (("", 1), (f", ca_file: {tmp_path}/cert.pem", 0)):
            rules = write_rules(f"""
                settings:
                  user:
                    backend: vergeos
                    vergeos: {{url: "{state.url}", token: "${{env:VERGE_TOKEN}}"{ca}}}
                tasks:
                  disable: {{action: user.disable, with: {{user: carol}}}}
                """)
            assert run_cli("apply", rules).exit_code == 0
            result = run_cli("tasks", "run", "disable", "--json")
            assert result.exit_code == expected, result.stdout
            if expected:
                assert "SSLError" in json.loads(result.stdout)["error"] and state.users[7]["enabled"] is True
        assert state.users[7]["enabled"] is False
    finally:
        server.shutdown()
        server.server_close()
