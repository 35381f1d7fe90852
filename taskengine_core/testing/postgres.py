"""A throwaway PostgreSQL server for tests and benchmarks: started in a temporary directory as
the ``postgres`` user when run as root (``initdb`` refuses root), listening on 127.0.0.1 on a free
port, with durability off (it is thrown away). Each caller gets a database of its own from
:meth:`PostgresServer.create_database`. Needs PostgreSQL's server binaries (Debian:
``apt-get install postgresql``) and psycopg (``taskengine-core[postgres]``)."""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path


def find_bindir() -> Path | None:
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    return Path(candidates[-1]).parent if candidates else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_server_user(argv: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *argv]
    return argv


class PostgresServer:
    def __init__(self) -> None:
        self.bindir = find_bindir()
        self.dir: str | None = None
        self.port = 0
        self._names = itertools.count(1)

    def start(self, *, durable: bool = False) -> None:
        """``durable``: keep fsync and synchronous commits on (benchmarks that compare with
        SQLite's ``synchronous=FULL``); off by default, as a test's server is thrown away."""
        if self.bindir is None:
            raise FileNotFoundError("PostgreSQL's initdb is not installed (apt-get install postgresql)")
        self.dir = tempfile.mkdtemp(prefix="taskengine-pg-")
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        data = f"{self.dir}/data"
        self.port = _free_port()
        run = lambda argv: subprocess.run(_as_server_user(argv), check=True, capture_output=True, text=True)  # noqa: E731
        run([str(self.bindir / "initdb"), "-D", data, "-U", "postgres", "-A", "trust", "--no-sync",
             "-E", "UTF8", "--locale=C"])
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.dir} -c max_connections=300"
        if not durable:
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        run([str(self.bindir / "pg_ctl"), "-D", data, "-o", options, "-l", f"{self.dir}/log", "-w", "start"])

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        """``postgresql://...`` of a new, empty database on this server."""
        from taskengine_core.store.postgres.admin import create_database

        name = f"te_{os.getpid()}_{next(self._names)}"
        create_database(self.url(), name)
        return self.url(name)

    def stop(self) -> None:
        if self.dir is None:
            return
        subprocess.run(_as_server_user([str(self.bindir / "pg_ctl"), "-D", f"{self.dir}/data", "-m",
                                        "immediate", "stop"]), capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir = None
