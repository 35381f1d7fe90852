"""updates.* with the pypi source: a static PEP 503 index and a PEP 691 JSON index on
127.0.0.1, installed versions read from a site directory or a Python executable."""

from __future__ import annotations

import http.server
import json
import subprocess
import sys
import threading
from importlib.metadata import version as installed_version

import pytest
from packaging.version import Version

from taskengine_core.context import ActionContext
from taskengine_core.errors import ActionError
from taskengine_updates.action import check_updates, download_updates, install_updates
from tests.test_updates_apt import Emitted
from tests.test_updates_support import Served, simple_index, site_with


@pytest.fixture
def index(tmp_path):
    servers = []

    def make(releases, **kwargs):
        root = tmp_path / f"index{len(servers)}"
        simple_index(root, releases, **kwargs)
        servers.append(Served(root))
        return servers[-1].url + "simple/"

    yield make
    for server in servers:
        server.stop()


def ctx(settings=None) -> ActionContext:
    return ActionContext(run_id="r", task="t", settings=settings or {}, timeout=120, emit=Emitted())


def test_check_against_a_site_directory(index, tmp_path):
    url = index({"te-alpha": ["1.0", "1.1", "1.2", "2.0rc1"], "te-beta": ["2.0"],
                 "te-gamma": ["1.0"]}, yanked={"te-alpha": ["1.2"]})
    site = site_with(tmp_path, {"te-alpha": "1.0", "te-beta": "2.0"})
    c = ctx({"pypi": {"index": url, "site": str(site)}})
    out = check_updates({"source": "pypi", "packages": ["te-alpha", "te-beta", "te-gamma"]}, c)
    # 1.2 is yanked, 2.0rc1 a pre-release, beta is current, gamma is not installed
    assert out["packages"] == [{"name": "te-alpha", "installed": "1.0", "candidate": "1.1",
                                "size": None}]
    [(type_, data, _)] = c.emit
    assert type_ == "update.available" and data["source"] == "pypi" and data["count"] == 1
    pre = check_updates({"source": "pypi", "packages": ["te-alpha"], "prereleases": True},
                        ctx({"pypi": {"index": url, "site": str(site)}}))
    assert [p["candidate"] for p in pre["packages"]] == ["2.0rc1"]


def test_check_reads_versions_from_a_python_executable(index):
    current = Version(installed_version("packaging"))
    newer = f"{current.major + 1}.0"
    url = index({"packaging": [str(current), newer]})
    out = check_updates({"source": "pypi", "index": url, "packages": ["packaging"],
                         "python": sys.executable}, ctx())
    assert out["packages"] == [{"name": "packaging", "installed": str(current),
                                "candidate": newer, "size": None}]


class Json691(http.server.BaseHTTPRequestHandler):
    """A PEP 691 index answering JSON only to clients that ask for it."""

    def do_GET(self):  # noqa: N802
        accept = self.headers.get("Accept", "")
        if self.path != "/simple/te-alpha/" or "application/vnd.pypi.simple.v1+json" not in accept:
            self.send_error(404)
            return
        body = json.dumps({"meta": {"api-version": "1.1"}, "name": "te-alpha", "files": [
            {"filename": "te_alpha-1.0-py3-none-any.whl", "url": "x", "hashes": {}, "size": 10},
            {"filename": "te_alpha-1.5.tar.gz", "url": "y", "hashes": {}, "size": 2345},
            {"filename": "te_alpha-1.6-py3-none-any.whl", "url": "z", "hashes": {}, "size": 99,
             "yanked": "broken"}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/vnd.pypi.simple.v1+json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_pep_691_json_gives_sizes(tmp_path):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Json691)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        site = site_with(tmp_path, {"te-alpha": "1.0"})
        out = check_updates({"source": "pypi", "packages": ["te-alpha"], "site": str(site),
                             "index": f"http://127.0.0.1:{server.server_address[1]}/simple"}, ctx())
    finally:
        server.shutdown()
        server.server_close()
    assert out["packages"] == [{"name": "te-alpha", "installed": "1.0", "candidate": "1.5",
                                "size": 2345}]


def test_download_then_install_into_an_environment(index, tmp_path):
    url = index({"te-alpha": ["1.0", "1.1"]})
    env = tmp_path / "venv"
    # pip comes from the base interpreter's site-packages; installs go into the venv
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", "--system-site-packages", str(env)],
                   check=True)
    python = str(env / "bin" / "python")
    subprocess.run([python, "-m", "pip", "install", "--isolated", "--quiet", "--no-deps",
                    "--index-url", url, "te-alpha==1.0"], check=True)
    options = {"pypi": {"index": url, "python": python, "packages": ["te-alpha"],
                        "download_dir": str(tmp_path / "dl")}}
    c = ctx(options)
    assert download_updates({"source": "pypi"}, c)["count"] == 1
    assert [p.name for p in (tmp_path / "dl").iterdir()] == ["te_alpha-1.1-py3-none-any.whl"]
    assert c.emit[0][0] == "update.downloaded"
    c = ctx(options)
    out = install_updates({"source": "pypi"}, c)
    assert out["result"] == "succeeded"
    shown = subprocess.run([python, "-c", "import te_alpha_mod; print(te_alpha_mod.VERSION)"],
                           capture_output=True, text=True, check=True)
    assert shown.stdout.strip() == "1.1"
    [(type_, data, _)] = c.emit
    assert type_ == "update.completed" and data["packages"][0]["candidate"] == "1.1"
    assert check_updates({"source": "pypi"}, ctx(options))["count"] == 0


def test_install_needs_an_executable_not_a_site_directory(index, tmp_path):
    url = index({"te-alpha": ["1.0", "1.1"]})
    site = site_with(tmp_path, {"te-alpha": "1.0"})
    with pytest.raises(ActionError, match="updates.install needs the environment's python"):
        install_updates({"source": "pypi", "index": url, "site": str(site),
                         "packages": ["te-alpha"]}, ctx())


def test_unreachable_index_is_named(tmp_path):
    server = Served(tmp_path)
    url = server.url + "simple/"
    server.stop()
    site = site_with(tmp_path, {"te-alpha": "1.0"})
    with pytest.raises(ActionError) as err:
        check_updates({"source": "pypi", "index": url, "site": str(site),
                       "packages": ["te-alpha"]}, ctx())
    assert str(err.value) == f"pypi: index unreachable: {url}te-alpha/: connection refused"
    assert err.value.retryable


def test_missing_options_are_named():
    with pytest.raises(ActionError, match=r"source 'pypi' needs index, packages, python \(or site\): "
                                          r"set it in settings.updates.pypi"):
        check_updates({"source": "pypi"}, ctx())


def test_a_package_name_cannot_be_an_option():
    with pytest.raises(ActionError, match="packages/0"):
        check_updates({"source": "pypi", "index": "http://127.0.0.1:1/simple/", "site": "/x",
                       "packages": ["--index-url=http://evil"]}, ctx())
