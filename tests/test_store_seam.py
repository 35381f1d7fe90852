"""The store seam: no SQL outside ``taskengine_core/store/``. Engine, CLI, UI and plugins call
store functions; only the store holds SQL strings, calls ``execute`` or imports ``sqlite3``."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCANNED = ("taskengine_core", "plugins")
EXEMPT = ("taskengine_core", "store")
PATTERNS = [
    ("SQL SELECT", re.compile(r"\bSELECT\s")),
    ("SQL INSERT", re.compile(r"\bINSERT\s+(OR\s+\w+\s+)?INTO\b")),
    ("SQL UPDATE", re.compile(r"\bUPDATE\s+\w+\s+SET\b")),
    ("SQL DELETE", re.compile(r"\bDELETE\s+FROM\b")),
    # Engine.execute(run_id) runs a task (no SQL); any other ``.execute(`` is a database call
    (".execute(", re.compile(r"(?<!\bengine)\.execute\(")),
    ("executemany", re.compile(r"\bexecutemany\b")),
    ("import sqlite3", re.compile(r"^\s*(import sqlite3|from sqlite3 import)", re.M)),
    ("sqlite-utils table API", re.compile(r"""\bdb\[["']\w+["']\]|\.table\(["']""")),
]


def sql_outside_the_store(root: Path = ROOT) -> list[str]:
    """``path:line: what`` for every line outside the store that holds SQL."""
    found = []
    for top in SCANNED:
        for path in sorted((root / top).rglob("*.py")):
            if path.relative_to(root).parts[:2] == EXEMPT:
                continue
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                for what, pattern in PATTERNS:
                    if pattern.search(line):
                        found.append(f"{path.relative_to(root)}:{number}: {what}: {line.strip()[:100]}")
                        break
    return found


def test_the_scan_finds_each_kind_of_sql(tmp_path):
    pkg = tmp_path / "taskengine_core"
    (pkg / "store").mkdir(parents=True)
    (tmp_path / "plugins").mkdir()
    (pkg / "store" / "runs.py").write_text('conn.execute("SELECT 1 FROM runs")\n')  # the store may
    (pkg / "engine.py").write_text(
        'import sqlite3\nx = "SELECT id FROM runs"\nconn.execute(x)\n'
        'y = "UPDATE runs SET status = ?"\nz = "DELETE FROM runs"\nconn.executemany(w, [])\n'
        'q = "INSERT OR IGNORE INTO events"\ndb["runs"].insert({})\nok = "selected: update the set"\n'
        'engine.execute(run_id)\n')
    found = sql_outside_the_store(tmp_path)
    assert [line.split(":")[1] for line in found] == ["1", "2", "3", "4", "5", "6", "7", "8"], found
    assert all(line.startswith("taskengine_core/engine.py:") for line in found)


def test_files_this_wave_moved_hold_no_sql():
    """The configuration, task-log, CLI and dashboard paths are done already."""
    moved = ("taskengine_core/model.py", "taskengine_core/apply.py", "taskengine_core/catalog.py",
             "taskengine_core/task_logs.py", "taskengine_core/rule_tests.py", "taskengine_core/preview.py",
             "taskengine_core/cli/", "taskengine_core/ui/", "taskengine_core/testing/harness.py")
    left = [line for line in sql_outside_the_store() if line.startswith(moved)]
    assert not left, "SQL outside taskengine_core/store/:\n" + "\n".join(left)


def test_no_sql_outside_the_store():
    found = sql_outside_the_store()
    assert not found, f"{len(found)} lines of SQL outside taskengine_core/store/:\n" + "\n".join(found)
