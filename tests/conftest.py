"""Shared fixtures. Every test gets its own home directory and database (autouse)."""

from __future__ import annotations

import sqlite3
import subprocess
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from taskengine_core.cli import cli


def pytest_configure(config):
    config.addinivalue_line("markers", "sqlite_only(reason): about SQLite itself; not run on PostgreSQL (tests/backends.py)")


@pytest.fixture(autouse=True)
def isolated_home(tmp_path, monkeypatch):
    """Point TASKENGINE_HOME and TASKENGINE_DB into this test's temporary directory."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("TASKENGINE_HOME", str(home))
    monkeypatch.setenv("TASKENGINE_DB", str(home / "taskengine.db"))
    monkeypatch.delenv("TASKENGINE_DISABLE_PLUGINS", raising=False)
    monkeypatch.delenv("TASKENGINE_DEBUG", raising=False)
    monkeypatch.delenv("TASKENGINE_INGRESS_TOKEN", raising=False)
    return home


@pytest.fixture
def db_path(isolated_home) -> Path:
    return isolated_home / "taskengine.db"


@pytest.fixture
def run_cli():
    """Run the CLI in-process; returns click's Result (stdout and stderr kept apart)."""

    def invoke(*args, input=None, env=None):
        runner = CliRunner()
        return runner.invoke(cli, [str(a) for a in args], input=input, env=env, catch_exceptions=False)

    return invoke


@pytest.fixture
def write_rules(tmp_path):
    """Write a rule file from an indented YAML string; returns its path."""

    def write(text: str, name: str = "rules.yaml") -> Path:
        path = tmp_path / "rules" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())
        return path

    return write


def dump_db(path: Path) -> list[str]:
    """Every row of every table, as text: to compare a database before and after."""
    if not path.exists():
        return []
    conn = sqlite3.connect(path)
    try:
        out = []
        for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name"):
            if name == "nodes":  # a running engine's heartbeat: liveness, not data a command changes
                continue
            for row in conn.execute(f'SELECT * FROM "{name}" ORDER BY 1'):
                out.append(f"{name}: {row!r}")
        return out
    finally:
        conn.close()


class FakeClock:
    """A clock the test moves by hand; monotonic time moves with it."""

    def __init__(self, start: str = "2026-03-01T12:00:00+00:00") -> None:
        from datetime import datetime

        self._now = datetime.fromisoformat(start)
        self._mono = 1000.0

    def now(self):
        return self._now

    def monotonic(self) -> float:
        return self._mono

    def sleep(self, seconds: float) -> None:
        self.advance(seconds)

    def advance(self, seconds: float) -> None:
        from datetime import timedelta

        self._now += timedelta(seconds=seconds)
        self._mono += seconds


@pytest.fixture
def applied(write_rules, db_path):
    """Apply a rule file (YAML text) to the test database through the real loader."""
    from taskengine_core.apply import apply_config
    from taskengine_core.plugins import get_plugin_manager
    from taskengine_core.rules.validate import load_config
    from taskengine_core.store import open_store

    def apply(text: str, *, manager=None, name: str = "rules.yaml"):
        manager = manager or get_plugin_manager()
        store = open_store(db_path)
        try:
            return apply_config(store, load_config([write_rules(text, name)], manager.registry()))
        finally:
            store.close()

    return apply


@pytest.fixture
def engine_factory(db_path):
    """Make engines on the test database with their executor started; stopped at the end."""
    from taskengine_core.engine import Engine

    made = []

    def make(**kwargs):
        engine = Engine(db_path, **kwargs)
        engine.executor.start()
        made.append(engine)
        return engine

    yield make
    for engine in made:
        engine.executor.stop(0)


# -- PostgreSQL (tests/pg_support.py) -----------------------------------------------------------


@pytest.fixture(scope="session")
def postgres_server():
    """One PostgreSQL server for the whole test session (skipped or failed when none can start)."""
    from tests.pg_support import PostgresServer, unavailable

    try:
        import psycopg  # noqa: F401
    except ImportError:
        unavailable("psycopg is not installed (pip install -e '.[test]')")
    server = PostgresServer()
    try:
        server.start()
    except (OSError, subprocess.CalledProcessError) as exc:
        server.stop()
        detail = getattr(exc, "stderr", "") or str(exc)
        unavailable(f"the server did not start: {detail.strip()[-300:]}")
    yield server
    server.stop()


@pytest.fixture
def postgres_url(postgres_server) -> str:
    """``postgresql://...`` of a new, empty database of this test's own."""
    return postgres_server.create_database()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_target(request, db_path) -> str:
    """The engine's database on each backend in turn: the SQLite file, then a PostgreSQL database."""
    if request.param == "sqlite":
        return str(db_path)
    return request.getfixturevalue("postgres_url")
