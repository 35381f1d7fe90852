"""What keeps the commands scripts call often fast (the figures are in benchmarks/bench_cli.py,
not here): `emit`, `logs list` and `--help` import no JSON Schema library, no sqlite-utils and
no plugin; the shortcuts that make that possible agree with what they stand in for."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from taskengine_core.event_check import plainly_valid
from taskengine_core.events import EVENT_SCHEMA, _validators

HEAVY = ("jsonschema", "fastjsonschema", "sqlite_utils", "pluggy", "yaml", "jinja2", "taskengine_command")
PROBE = ("import sys\nfrom taskengine_core.cli import main\nsys.argv = ['taskengine', *sys.argv[1:]]\n"
         "try:\n    main()\nexcept SystemExit:\n    pass\n"
         "print('LOADED', sorted(m for m in {heavy!r} if m in sys.modules), file=sys.stderr)\n")


def loaded_by(*args: str, env: dict | None = None, cwd=None) -> tuple[list[str], str]:
    result = subprocess.run([sys.executable, "-c", PROBE.format(heavy=HEAVY), *args], capture_output=True,
                            text=True, env=env, cwd=cwd, timeout=60)
    line = [ln for ln in result.stderr.splitlines() if ln.startswith("LOADED ")][-1]
    return json.loads(line[len("LOADED "):].replace("'", '"')), result.stdout


@pytest.fixture
def migrated(run_cli, write_rules):
    assert run_cli("apply", write_rules("tasks:\n  t: {action: command.run, with: {argv: [echo]}}\n")).exit_code == 0


def test_emit_and_logs_list_load_nothing_heavy(migrated, db_path):
    loaded, out = loaded_by("emit", "user.login", "user=alice", "--id", "x1")
    assert loaded == [] and len(out.strip()) == 20  # the event id
    loaded, _ = loaded_by("logs", "list")
    assert loaded == []
    import sqlite3

    with sqlite3.connect(db_path) as conn:
        assert conn.execute("SELECT type, source, source_id, data FROM events").fetchall() == [
            ("user.login", "cli", "x1", '{"user":"alice"}')]


def test_an_invalid_event_still_gets_the_schema_message(migrated):
    loaded, _ = loaded_by("emit", "bad type")
    assert "jsonschema" in loaded  # only now, to explain the error


def installed(fixture: str, tmp_path: Path) -> tuple[Path, dict]:
    """A test plugin installed with pip into a folder, and an environment that sees it."""
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "--isolated", "install", "--quiet", "--no-deps",
                    "--no-build-isolation", "--no-index", "--target", str(site),
                    str(Path(__file__).parent / "fixtures" / fixture)], check=True, capture_output=True)
    return site, {**os.environ, "PYTHONPATH": str(site)}


def test_help_lists_plugin_commands_from_a_cache_after_the_first_run(tmp_path, isolated_home):
    site, env = installed("example_plugin", tmp_path)
    first, out = loaded_by("--help", env=env, cwd=tmp_path)
    assert "pluggy" in first and "  hello " in out
    second, out = loaded_by("--help", env=env, cwd=tmp_path)
    assert second == [] and "  hello " in out  # listed without loading a plugin
    # the file defining the command changes: the cache is not trusted
    source = next(site.glob("taskengine_example/__init__.py"))
    later = time.time() + 5
    os.utime(source, (later, later))
    third, out = loaded_by("--help", env=env, cwd=tmp_path)
    assert "pluggy" in third and "  hello " in out
    # the plugin is gone from sys.path: neither is its command
    _, out = loaded_by("--help", cwd=tmp_path)
    assert "  hello " not in out


def test_a_broken_plugins_warning_is_repeated_from_the_cache(tmp_path, isolated_home):
    _, env = installed("broken_plugin", tmp_path)
    for _ in range(2):
        result = subprocess.run([sys.executable, "-m", "taskengine_core", "--help"], env=env, cwd=tmp_path,
                                capture_output=True, text=True, timeout=60)
        assert "warning: plugin 'broken' from distribution 'taskengine-broken' failed to load" in result.stderr


def test_the_migration_shortcut_knows_every_migration(db_path):
    import sqlite3

    from sqlite_utils import Database

    from taskengine_core.store import Store
    from taskengine_core.store.migrations import MIGRATIONS
    from taskengine_core.store.quick import migration_names, migrations_current

    fresh = Database(sqlite3.connect(":memory:"))
    assert list(migration_names()) == [m.name for m in MIGRATIONS.pending(fresh)]
    conn = sqlite3.connect(db_path)
    assert not migrations_current(conn)  # a new file
    Store(db_path).close()
    assert migrations_current(conn)
    conn.execute("DELETE FROM _sqlite_migrations WHERE name = ?", (migration_names()[-1],))
    conn.commit()
    assert not migrations_current(conn)  # one missing: sqlite-utils decides


def test_lazy_database_queries_like_sqlite_utils(db_path):
    from taskengine_core.store import Store

    store = Store(db_path)
    rows = list(store.db.query("SELECT name, ? AS x FROM sqlite_master WHERE type = 'table' ORDER BY name", [1]))
    real = list(store.db.real().query("SELECT name, ? AS x FROM sqlite_master WHERE type = 'table' ORDER BY name", [1]))
    assert rows == real and rows[0].keys() == {"name", "x"}
    assert store.db["events"].count == 0  # anything else goes to sqlite-utils
    store.close()


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
                           max_leaves=8)
texts = st.text(max_size=5) | st.sampled_from(["", "a", "user.login", "x" * 200, "x" * 201, "a b", "a\n", "-x"])
bodies = st.dictionaries(st.sampled_from(["type", "data", "source", "id", "time", "extra"]),
                         texts | json_values, max_size=5)


@settings(max_examples=400, deadline=None)
@given(bodies)
def test_plainly_valid_never_passes_what_the_schema_refuses(body):
    fast, thorough = _validators()
    if plainly_valid(body, EVENT_SCHEMA):
        fast(body)  # raises if the schema refuses it
        assert not list(thorough.iter_errors(body))


@pytest.mark.parametrize("body", [
    {"type": "user.login"}, {"type": "a", "data": {"x": [1, None]}, "source": "cli", "id": "i" * 200},
    {"type": "sync:failed", "data": {}}])
def test_plainly_valid_passes_the_common_bodies(body):
    assert plainly_valid(body, EVENT_SCHEMA)
