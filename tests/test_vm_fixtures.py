"""Shared by the vm tests (no tests of its own): libvirt test-driver node files, a test CA with
a server certificate for 127.0.0.1, and the VergeOS and Proxmox *contract servers*.

There is no VergeOS or Proxmox to test against here. The contract servers are small HTTPS
servers on 127.0.0.1 implementing the documented endpoints the plugin uses (VergeOS API v4:
``vms``, ``tenants``, ``tags``, ``tag_members``, ``machine_status``, ``vm_actions``,
``tenant_actions``; Proxmox VE: ``cluster/resources``, ``nodes/{node}/qemu/{vmid}/status/*``
returning a UPID, ``nodes/{node}/tasks/{upid}/status``), with their authentication.
"""

from __future__ import annotations

import base64
import datetime as dt
import http.server
import ipaddress
import json
import ssl
import threading
import uuid as uuidlib
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

TAGS_NS = "https://taskengine.dev/xmlns/vm/1"


# -- libvirt test driver ---------------------------------------------------------------------

def domain_xml(name: str, *, state: str = "off", tags=(), ignores_acpi: bool = False,
               transient: bool = False, uuid: str | None = None) -> str:
    """One ``<domain type='test'>``. state: on | off | paused. ``ignores_acpi``: a guest that
    ignores a graceful shutdown (``<on_poweroff>restart</on_poweroff>``)."""
    runstate = {"on": "", "off": "<test:runstate>5</test:runstate>",
                "paused": "<test:runstate>3</test:runstate>"}[state]
    meta = ""
    if tags:
        inner = "".join(f"<tag>{t}</tag>" for t in tags)
        meta = f"<metadata><taskengine:tags xmlns:taskengine='{TAGS_NS}'>{inner}</taskengine:tags></metadata>"
    return (f"<domain type='test'><name>{name}</name><uuid>{uuid or uuidlib.uuid4()}</uuid>"
            f"<memory>65536</memory><vcpu>1</vcpu><os><type>hvm</type></os>"
            f"{'<on_poweroff>restart</on_poweroff>' if ignores_acpi else ''}"
            f"{runstate}{'<test:transient/>' if transient else ''}{meta}</domain>")


def node_file(directory: Path, domains: list[str], name: str = "node.xml") -> str:
    """Write a test-driver node file; returns its ``test:///`` URI (one per test: the driver
    keeps one state per URI and process, shared through the plugin's one connection)."""
    path = Path(directory) / name
    path.write_text("<node xmlns:test='http://libvirt.org/schemas/domain/test/1.0'>"
                    + "".join(domains) + "</node>")
    return f"test://{path}"


def lab_node(directory: Path) -> str:
    """The standard lab: gpu-alice off, lab-1 on, lab-2 on ignoring ACPI, paused-1 paused."""
    return node_file(directory, [
        domain_xml("gpu-alice", state="off", tags=["gpu"]),
        domain_xml("lab-1", state="on", tags=["lab"]),
        domain_xml("lab-2", state="on", tags=["lab", "gpu"], ignores_acpi=True),
        domain_xml("paused-1", state="paused"),
    ])


def domain(uri: str, name: str):
    """The plugin's own (shared) connection's domain: what the engine sees."""
    from taskengine_vm import libvirt_conn

    return libvirt_conn.connection(uri, "test").lookupByName(name)


def state_of(uri: str, name: str) -> int:
    return domain(uri, name).state()[0]


def run_power_task(applied, db_path, hosts: str, with_: dict) -> tuple[str, dict | None, str | None]:
    """Apply one vm.power task ``t`` (``hosts``: the YAML flow mapping of settings.vm.hosts),
    run it by hand through the engine and return the run's (status, output, error)."""
    from taskengine_core.engine import Engine

    applied(f"""
        settings:
          vm: {{hosts: {hosts}}}
        tasks:
          t: {{action: vm.power, with: {json.dumps(with_)}}}
    """)
    engine = Engine(db_path, workers=1)
    run_id = engine.queue_run("t")
    engine.executor.start()
    try:
        status = engine.execute(run_id, timeout=60)
    finally:
        engine.executor.stop(0)
    output, error = engine.store.conn.execute("SELECT output, error FROM runs WHERE id = ?",
                                              (run_id,)).fetchone()
    engine.store.close()
    return status, json.loads(output) if output else None, error


def wait_for(predicate, timeout: float = 30.0):
    """``predicate()``'s first true value, polled; fails the test after ``timeout`` seconds.
    A database still being created (no such table yet) counts as not yet."""
    import sqlite3
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except sqlite3.OperationalError:
            value = None
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {predicate}")


# -- TLS ---------------------------------------------------------------------------------------

def make_tls(directory: Path) -> tuple[str, str, str]:
    """A CA, and a certificate for 127.0.0.1 it signed: (ca.pem, server.pem, server.key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "taskengine test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False,
                                       encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(ca_key, hashes.SHA256()))
    directory = Path(directory)
    paths = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return tuple(str(p) for p in paths)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True


class ContractServer:
    """Base: HTTPS on 127.0.0.1 (port 0), requests logged, ``handle(method, path, query,
    body, headers) -> (status, json)`` implemented by subclasses."""

    def __init__(self, tls: tuple[str, str, str]) -> None:
        self.lock = threading.Lock()
        self.requests: list[tuple[str, str]] = []
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _serve(self, method):
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                with owner.lock:
                    owner.requests.append((method, parts.path))
                    status, body = owner.handle(method, unquote(parts.path), parse_qs(parts.query),
                                                raw, self.headers)
                data = json.dumps(body).encode() if body is not None else b""
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                self._serve("GET")

            def do_POST(self):
                self._serve("POST")

        self.server = _Server(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(tls[1], tls[2])
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def count(self, method: str, prefix: str) -> int:
        with self.lock:
            return sum(1 for m, p in self.requests if m == method and p.startswith(prefix))


class VergeOS(ContractServer):
    """VergeOS API v4 as documented: Bearer API keys or Basic; actions answer 201, 409 when the
    machine is already in that state, 404 for an unknown key."""

    def __init__(self, tls, *, token="verge-key-1", basic=("admin", "pw")) -> None:
        super().__init__(tls)
        self.token, self.basic = token, basic
        self.vms: dict[int, dict] = {}
        self.tenants: dict[int, dict] = {}
        self.tags: dict[int, str] = {}
        self.members: list[tuple[int, str]] = []

    def add_vm(self, key: int, name: str, *, running=False, tags=(), ignores_acpi=False) -> None:
        self.vms[key] = {"name": name, "machine": 1000 + key, "running": running,
                         "ignores_acpi": ignores_acpi}
        self._tag(f"vms/{key}", tags)

    def add_tenant(self, key: int, name: str, *, running=True, tags=()) -> None:
        self.tenants[key] = {"name": name, "running": running, "ignores_acpi": False}
        self._tag(f"tenants/{key}", tags)

    def _tag(self, member: str, tags) -> None:
        for tag in tags:
            key = next((k for k, v in self.tags.items() if v == tag), None)
            if key is None:
                key = len(self.tags) + 1
                self.tags[key] = tag
            self.members.append((key, member))

    def _authorised(self, headers) -> bool:
        auth = headers.get("Authorization", "")
        if auth == f"Bearer {self.token}":
            return True
        expected = base64.b64encode(f"{self.basic[0]}:{self.basic[1]}".encode()).decode()
        return auth == f"Basic {expected}"

    def handle(self, method, path, query, raw, headers):
        if not self._authorised(headers):
            return 401, {"err": "Invalid credentials"}
        rows = lambda table: [{"$key": k, "name": v["name"], "machine": v.get("machine"),
                               "running": v["running"],
                               "status": "running" if v["running"] else "stopped"}
                              for k, v in table.items()]
        if method == "GET" and path == "/api/v4/vms":
            return 200, rows(self.vms)
        if method == "GET" and path == "/api/v4/tenants":
            return 200, [{k: v for k, v in r.items() if k != "machine"} for r in rows(self.tenants)]
        if method == "GET" and path == "/api/v4/tags":
            return 200, [{"$key": k, "name": v} for k, v in self.tags.items()]
        if method == "GET" and path == "/api/v4/tag_members":
            return 200, [{"$key": i + 1, "tag": t, "member": m} for i, (t, m) in enumerate(self.members)]
        if method == "GET" and path.startswith("/api/v4/machine_status/"):
            machine = int(path.rsplit("/", 1)[1])
            vm = next((v for v in self.vms.values() if v["machine"] == machine), None)
            if vm is None:
                return 404, {"err": "not found"}
            return 200, {"running": vm["running"], "status": "running" if vm["running"] else "stopped",
                         "powerstate": vm["running"], "state": "online" if vm["running"] else "offline"}
        if method == "POST" and path in ("/api/v4/vm_actions", "/api/v4/tenant_actions"):
            body = json.loads(raw or b"{}")
            kind = "vm" if path.endswith("vm_actions") else "tenant"
            table = self.vms if kind == "vm" else self.tenants
            target = table.get(int(body.get(kind, -1)))
            if target is None:
                return 404, {"err": f"{kind} not found"}
            action = body.get("action")
            if action == "poweron":
                if target["running"]:
                    return 409, {"err": "already running"}
                target["running"] = True
            elif action in ("poweroff", "kill"):
                if not target["running"]:
                    return 409, {"err": "already stopped"}
                if action == "kill" or not target["ignores_acpi"]:
                    target["running"] = False
            elif action == "reset":
                pass
            else:
                return 400, {"err": f"unknown action {action}"}
            return 201, {"location": f"/v4/{kind}_actions/1", "$key": 1}
        return 404, {"err": f"no route {method} {path}"}


class Proxmox(ContractServer):
    """Proxmox VE's API as documented: PVEAPIToken auth; power calls answer a UPID whose task
    is polled to ``status: stopped`` / ``exitstatus: OK``."""

    def __init__(self, tls, *, token_id="taskengine@pve!ops", secret="pve-secret") -> None:
        super().__init__(tls)
        self.auth = f"PVEAPIToken={token_id}={secret}"
        self.vms: dict[int, dict] = {}
        self.tasks: dict[str, dict] = {}

    def add_vm(self, vmid: int, name: str, *, status="stopped", tags=(), node="pve1",
               ignores_acpi=False, paused=False) -> None:
        self.vms[vmid] = {"name": name, "status": status, "tags": ";".join(tags), "node": node,
                          "ignores_acpi": ignores_acpi, "paused": paused}

    def handle(self, method, path, query, raw, headers):
        if headers.get("Authorization") != self.auth:
            return 401, {"data": None, "message": "authentication failure"}
        if method == "GET" and path == "/api2/json/cluster/resources":
            return 200, {"data": [{"id": f"qemu/{k}", "vmid": k, "name": v["name"], "node": v["node"],
                                   "type": "qemu", "status": v["status"], "tags": v["tags"]}
                                  for k, v in self.vms.items()]}
        parts = path.split("/")  # '', api2, json, nodes, NODE, qemu, VMID, status, OP
        if len(parts) >= 7 and parts[3] == "nodes" and parts[5] == "tasks":
            task = self.tasks.get(parts[6])
            if task is None:
                return 404, {"data": None}
            task["polls"] += 1
            done = task["polls"] >= 2
            return 200, {"data": {"status": "stopped" if done else "running",
                                  "exitstatus": "OK" if done else None, "upid": parts[6]}}
        if len(parts) == 9 and parts[3] == "nodes" and parts[5] == "qemu" and parts[7] == "status":
            vm = self.vms.get(int(parts[6]))
            if vm is None or vm["node"] != parts[4]:
                return 404, {"data": None, "message": "no such VM"}
            op = parts[8]
            if method == "GET" and op == "current":
                return 200, {"data": {"status": vm["status"],
                                      "qmpstatus": "paused" if vm["paused"] else vm["status"]}}
            if method != "POST":
                return 405, None
            if op == "start":
                vm["status"], vm["paused"] = "running", False
            elif op == "stop":
                vm["status"], vm["paused"] = "stopped", False
            elif op == "shutdown":
                if not vm["ignores_acpi"]:
                    vm["status"], vm["paused"] = "stopped", False
            elif op == "suspend":
                vm["paused"] = True
            elif op == "resume":
                vm["paused"] = False
            elif op not in ("reboot", "reset"):
                return 400, {"data": None}
            upid = f"UPID:{vm['node']}:0000{len(self.tasks):04X}:00000000:00000000:qm{op}:{parts[6]}:taskengine@pve!ops:"
            self.tasks[upid] = {"polls": 0}
            return 200, {"data": upid}
        return 404, {"data": None, "message": f"no route {method} {path}"}
