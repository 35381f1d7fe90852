"""updates.* with the vergeos source, against a contract server on 127.0.0.1 implementing the
VergeOS v4 update API as documented (update_settings, update_actions, update_source_status,
update_source_packages, update_packages)."""

from __future__ import annotations

import http.server
import json
import threading
from urllib.parse import parse_qs, urlsplit

import pytest

from taskengine_core.context import ActionContext
from taskengine_core.errors import ActionError
from taskengine_updates.action import check_updates, download_updates, install_updates
from tests.test_updates_apt import Emitted

KEY = "test-api-key-123"


class VergeOS:
    """The system's side: what is installed, what the source offers after a refresh, and a
    background job that stays busy for ``busy_polls`` status reads."""

    def __init__(self) -> None:
        self.installed = {"yb-system": "4.13.0", "yb-ui": "4.13.0"}
        self.catalog = {"yb-system": "4.13.1", "yb-ui": "4.13.0"}
        self.offered: dict[str, dict] = {}
        self.status = "idle"
        self.busy_polls = 0
        self.fail_next: str | None = None
        self.actions: list[dict] = []
        self.lock = threading.Lock()

    def act(self, body: dict) -> None:
        self.actions.append(body)
        action = body["action"]
        if self.fail_next == action:
            self.status, self.fail_next = "error", None
            return
        if action in ("refresh", "all"):
            self.offered = {n: {"name": n, "version": v, "downloaded": False}
                            for n, v in self.catalog.items()}
        if action in ("download", "all"):
            for p in self.offered.values():
                p["downloaded"] = True
        if action in ("install", "all"):
            self.installed.update({n: p["version"] for n, p in self.offered.items()})
        self.status = {"refresh": "refreshing", "download": "downloading"}.get(action, "installing")
        self.busy_polls = 2


class Handler(http.server.BaseHTTPRequestHandler):
    system: VergeOS

    def _send(self, code: int, body=None) -> None:
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _authorised(self) -> bool:
        if self.headers.get("Authorization") != f"Bearer {KEY}":
            self._send(401, {"err": "Unauthorized"})
            return False
        return True

    def do_GET(self):  # noqa: N802
        if not self._authorised():
            return
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        s = self.system
        with s.lock:
            if url.path == "/api/v4/update_settings/1":
                self._send(200, {"$key": 1, "source": 3})
            elif url.path == "/api/v4/update_source_status":
                assert query["filter"] == ["source eq 3"]
                if s.busy_polls:
                    s.busy_polls -= 1
                    if not s.busy_polls:
                        status, s.status = s.status, "idle"
                        self._send(200, [{"source": 3, "status": status}])
                        return
                self._send(200, [{"source": 3, "status": s.status,
                                  "status_info": "download failed: disk full" if s.status == "error" else ""}])
            elif url.path == "/api/v4/update_source_packages":
                self._send(200, list(s.offered.values()))
            elif url.path == "/api/v4/update_packages":
                self._send(200, [{"name": n, "version": v} for n, v in s.installed.items()])
            else:
                self._send(404, {"err": "not found"})

    def do_POST(self):  # noqa: N802
        if not self._authorised():
            return
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if urlsplit(self.path).path != "/api/v4/update_actions" or body.get("source") != 3:
            self._send(404, {"err": "not found"})
            return
        with self.system.lock:
            self.system.act(body)
        self._send(201, {"$key": len(self.system.actions), "location": "/v4/update_actions/1"})

    def log_message(self, *args):
        pass


@pytest.fixture
def vergeos():
    system = VergeOS()
    handler = type("H", (Handler,), {"system": system})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    system.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield system
    server.shutdown()
    server.server_close()


def ctx(system, **extra) -> ActionContext:
    settings = {"vergeos": {"url": system.url, "api_key": KEY, "poll_interval": 0.01, **extra}}
    return ActionContext(run_id="r", task="t", settings=settings, timeout=30, emit=Emitted())


def test_check_refreshes_waits_and_lists_pending(vergeos):
    c = ctx(vergeos)
    out = check_updates({"source": "vergeos"}, c)
    assert vergeos.actions == [{"source": 3, "action": "refresh"}]
    assert vergeos.status == "idle"  # the action returned only once the system was idle
    assert out["packages"] == [{"name": "yb-system", "installed": "4.13.0",
                                "candidate": "4.13.1", "size": None}]
    assert c.emit[0][0] == "update.available"


def test_download_and_install(vergeos):
    check_updates({"source": "vergeos"}, ctx(vergeos))
    c = ctx(vergeos)
    assert download_updates({"source": "vergeos"}, c)["count"] == 1
    assert vergeos.offered["yb-system"]["downloaded"] is True
    c = ctx(vergeos, force=True)
    out = install_updates({"source": "vergeos"}, c)
    assert vergeos.actions[-1] == {"source": 3, "action": "install", "force": True}
    assert out["result"] == "succeeded" and vergeos.installed["yb-system"] == "4.13.1"
    [(type_, data, _)] = c.emit
    assert type_ == "update.completed" and data["source"] == "vergeos"
    assert check_updates({"source": "vergeos"}, ctx(vergeos))["count"] == 0


def test_a_failed_job_on_the_system_fails_the_run_with_its_reason(vergeos):
    check_updates({"source": "vergeos"}, ctx(vergeos))
    vergeos.fail_next = "download"
    with pytest.raises(ActionError, match="vergeos: download failed on the system: "
                                          "download failed: disk full"):
        download_updates({"source": "vergeos"}, ctx(vergeos))


def test_a_wrong_key_is_refused_clearly(vergeos):
    c = ctx(vergeos, api_key="wrong")
    with pytest.raises(ActionError) as err:
        check_updates({"source": "vergeos"}, c)
    assert "refused (401): check api_key" in str(err.value) and not err.value.retryable
    assert "wrong" not in str(err.value)


def test_plain_http_to_a_remote_host_is_refused(vergeos):
    with pytest.raises(ActionError, match="plain http; use https"):
        check_updates({"source": "vergeos", "url": "http://vergeos.example.com"}, ctx(vergeos))


def test_unreachable_system_is_retryable(vergeos):
    c = ctx(vergeos, url="http://127.0.0.1:1")
    with pytest.raises(ActionError, match=r"vergeos: http://127.0.0.1:1/api/v4/ unreachable") as err:
        check_updates({"source": "vergeos"}, c)
    assert err.value.retryable
