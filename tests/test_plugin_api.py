"""Plugin API 2: plugin code never gets the database's location, and no plugin holds SQL."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from taskengine_core import hookspecs
from taskengine_core.context import ActionContext, EngineInfo, SourceContext

ROOT = Path(__file__).resolve().parent.parent
# what only the store may do: SQL statements, a raw connection, sqlite-utils' table API
FORBIDDEN = re.compile(r"import sqlite3|\.execute(many)?\(|\.executescript\(|\bdb\[\"|"
                       r"\b(SELECT|INSERT INTO|UPDATE \w+ SET|DELETE FROM|BEGIN IMMEDIATE|PRAGMA)\b")


def test_contexts_have_no_database_path_and_offer_deliveries():
    assert hookspecs.PLUGIN_API_VERSION == 2
    for context in (ActionContext, EngineInfo, SourceContext):
        assert "db_path" not in {f.name for f in dataclasses.fields(context)}, context
    assert "deliveries" in {f.name for f in dataclasses.fields(ActionContext)}
    assert "deliveries" in {f.name for f in dataclasses.fields(EngineInfo)}


def test_the_hook_reference_documents_this_version():
    text = (ROOT / "docs" / "hooks.md").read_text(encoding="utf-8")
    assert f"**Version {hookspecs.PLUGIN_API_VERSION}**" in text
    assert "db_path" in text.split("## Rules that hold for every hook")[0]  # what changed from 1
    assert "engine.db_path" not in text and "ctx.db_path)" not in text


def test_no_plugin_holds_sql_or_a_database_path():
    found = []
    for path in sorted((ROOT / "plugins").rglob("*.py")):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if FORBIDDEN.search(line) or "db_path" in line:
                found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert found == []
