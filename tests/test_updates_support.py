"""Real local components for the updates tests: an apt repository built with dpkg-deb and
dpkg-scanpackages, served over HTTP on 127.0.0.1, with an APT_CONFIG that keeps apt's sources,
lists, cache, dpkg database, log and install root under the test's directory; a static PEP 503
simple index of hand-built wheels; and a snapshot of the machine's own apt and dpkg state."""

from __future__ import annotations

import functools
import hashlib
import http.server
import os
import shutil
import subprocess
import threading
import zipfile
from pathlib import Path

import pytest

SYSTEM_APT_PATHS = ("/var/lib/dpkg/status", "/var/lib/apt", "/var/cache/apt", "/etc/apt")

needs_apt = pytest.mark.skipif(
    not all(shutil.which(p) for p in ("apt-get", "dpkg-deb", "dpkg-scanpackages")),
    reason="needs apt-get, dpkg-deb and dpkg-scanpackages (Debian package dpkg-dev; "
           "scripts/test installs it)")


class Served:
    """A directory served by http.server on 127.0.0.1, port chosen by the OS."""

    def __init__(self, root: Path) -> None:
        handler = functools.partial(_QuietHandler, directory=str(root))
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def build_deb(out: Path, name: str, version: str, *, payload: int = 0) -> Path:
    """A package of one file (plus ``payload`` random bytes, to make it big)."""
    root = out.parent / "build" / f"{name}-{version}"
    (root / "DEBIAN").mkdir(parents=True, exist_ok=True)
    share = root / "usr" / "share" / "te-test"
    share.mkdir(parents=True, exist_ok=True)
    (share / f"{name}.txt").write_text(f"{name} {version}\n")
    if payload:
        (share / f"{name}.bin").write_bytes(os.urandom(payload))
    (root / "DEBIAN" / "control").write_text(
        f"Package: {name}\nVersion: {version}\nArchitecture: all\n"
        f"Maintainer: Test <test@example.com>\nDescription: test package {name}\n")
    deb = out / f"{name}_{version}_all.deb"
    subprocess.run(["dpkg-deb", "-Znone", "--build", "--root-owner-group", str(root), str(deb)],
                   check=True, capture_output=True)
    shutil.rmtree(root)
    return deb


class AptRepo:
    """A local repository (``deb [trusted=yes] URL ./``) and an isolated apt around it.

    ``installed`` is what the fake dpkg database says is installed; ``config`` is the
    APT_CONFIG file to hand to the updates plugin."""

    def __init__(self, base: Path, installed: dict[str, str]) -> None:
        self.base = base
        self.pool = base / "repo"
        self.pool.mkdir(parents=True)
        self.server = Served(self.pool)
        self.root = base / "root"  # dpkg's --root: installs land here
        admin = self.root / "var" / "lib" / "dpkg"
        for d in (admin / "updates", admin / "info", base / "empty", base / "state" / "lists" / "partial",
                  base / "cache" / "archives" / "partial", base / "log"):
            d.mkdir(parents=True, exist_ok=True)
        self.status = admin / "status"
        self.status.write_text("".join(
            f"Package: {n}\nStatus: install ok installed\nVersion: {v}\nArchitecture: all\n"
            f"Maintainer: Test <test@example.com>\nDescription: test package {n}\n\n"
            for n, v in installed.items()))
        self.sources = base / "sources.list"
        self.point_at(self.server.url)
        self.config = base / "apt.conf"
        b = str(base)
        self.config.write_text(
            f'Dir::Etc::sourcelist "{self.sources}";\n'
            f'Dir::Etc::sourceparts "{b}/empty"; Dir::Etc::parts "{b}/empty"; Dir::Etc::main "/dev/null";\n'
            f'Dir::Etc::preferences "{b}/empty/none"; Dir::Etc::preferencesparts "{b}/empty";\n'
            f'Dir::State "{b}/state"; Dir::State::status "{self.status}";\n'
            f'Dir::Cache "{b}/cache"; Dir::Log "{b}/log";\n'
            'Acquire::Languages "none"; Acquire::Retries "0";\n'
            # the test directory is private to root: the _apt download sandbox could not write it
            'APT::Sandbox::User "root";\n'
            f'DPkg::Options:: "--root={self.root}";\n')
        self.archives = base / "cache" / "archives"
        self.lists_lock = base / "state" / "lists" / "lock"
        self.dpkg_lock = admin / "lock-frontend"
        self.history = base / "log" / "history.log"

    def point_at(self, url: str) -> None:
        self.sources.write_text(f"deb [trusted=yes] {url} ./\n")

    def add(self, name: str, version: str, *, payload: int = 0) -> None:
        build_deb(self.pool, name, version, payload=payload)

    def publish(self) -> None:
        done = subprocess.run(["dpkg-scanpackages", "--multiversion", ".", "/dev/null"],
                              cwd=self.pool, check=True, capture_output=True)
        packages = self.pool / "Packages"
        previous = packages.stat().st_mtime if packages.exists() else 0
        packages.write_bytes(done.stdout)
        # HTTP dates have whole seconds: a re-publish within the same second would look
        # unmodified to apt's If-Modified-Since
        stamp = max(previous + 2, packages.stat().st_mtime)
        os.utime(packages, (stamp, stamp))

    def installed_version(self, name: str) -> str | None:
        for record in self.status.read_text().split("\n\n"):
            fields = dict(line.split(": ", 1) for line in record.splitlines() if ": " in line)
            if fields.get("Package") == name and fields.get("Status", "").endswith(" installed"):
                return fields["Version"]
        return None

    def stop(self) -> None:
        self.server.stop()


@pytest.fixture
def apt_repo(tmp_path):
    """``apt_repo(installed={...}, available={name: [versions]})``: built and published."""
    made = []

    def make(installed: dict[str, str], available: dict[str, list[str]], *, payload: int = 0):
        repo = AptRepo(tmp_path / f"apt{len(made)}", installed)
        for name, versions in available.items():
            for version in versions:
                repo.add(name, version, payload=payload)
        repo.publish()
        made.append(repo)
        return repo

    yield make
    for repo in made:
        repo.stop()


def system_apt_snapshot() -> dict[str, tuple]:
    """(size, mtime, sha256 for small files) of everything under the machine's apt and dpkg
    state: a test compares it before and after to prove it changed nothing there."""
    out = {}
    for top in SYSTEM_APT_PATHS:
        paths = [Path(top)] if os.path.isfile(top) else sorted(Path(top).rglob("*"))
        for path in paths:
            try:
                st = path.lstat()
            except FileNotFoundError:
                continue
            if path.is_file() and not path.is_symlink():
                digest = (hashlib.sha256(path.read_bytes()).hexdigest()
                          if st.st_size < 8 << 20 else None)
                out[str(path)] = (st.st_size, st.st_mtime_ns, digest)
            else:
                out[str(path)] = ("dir-or-link", st.st_mtime_ns)
    return out


# -- a PEP 503 simple index ---------------------------------------------------------------------


def build_wheel(out: Path, name: str, version: str) -> Path:
    """A minimal, installable pure-Python wheel of one module."""
    dist = name.replace("-", "_")
    path = out / f"{dist}-{version}-py3-none-any.whl"
    info = f"{dist}-{version}.dist-info"
    files = {
        f"{dist}_mod.py": f"VERSION = {version!r}\n",
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(f"{n},,\n" for n in files) + f"{info}/RECORD,,\n"
    with zipfile.ZipFile(path, "w") as zf:
        for n, text in files.items():
            zf.writestr(n, text)
        zf.writestr(f"{info}/RECORD", record)
    return path


def simple_index(root: Path, releases: dict[str, list[str]], *, yanked: dict | None = None) -> Path:
    """A static PEP 503 tree: /simple/<name>/index.html with one anchor per wheel."""
    simple = root / "simple"
    files = root / "files"
    files.mkdir(parents=True, exist_ok=True)
    for name, versions in releases.items():
        page = simple / name
        page.mkdir(parents=True, exist_ok=True)
        anchors = []
        for version in versions:
            wheel = build_wheel(files, name, version)
            mark = ' data-yanked=""' if version in (yanked or {}).get(name, ()) else ""
            anchors.append(f'<a href="../../files/{wheel.name}"{mark}>{wheel.name}</a><br/>')
        (page / "index.html").write_text("<!DOCTYPE html><html><body>\n" + "\n".join(anchors)
                                         + "\n</body></html>\n")
    return simple


def site_with(root: Path, installed: dict[str, str]) -> Path:
    """A site directory holding only dist-info metadata of ``installed``."""
    site = root / "site"
    for name, version in installed.items():
        info = site / f"{name.replace('-', '_')}-{version}.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    return site
