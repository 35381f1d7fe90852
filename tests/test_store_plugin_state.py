"""taskengine_core.store.plugin_state and PluginState on both backends (SQLite, then PostgreSQL)."""

from __future__ import annotations

import pytest

from taskengine_core.plugin_state import PluginState
from taskengine_core.store import open_store
from taskengine_core.store import plugin_state as sql


@pytest.fixture
def store(db_target):
    s = open_store(db_target)
    yield s
    s.close()


def test_put_get_items_delete(store):
    with store.write() as db:
        sql.put(db.conn, "src", {"b": "2", "a%": "1", "a_": "3", "ab": "4", "Z": "0", "\u00e9": "5"}, "t")
        sql.put(db.conn, "other", {"a%": "9"}, "t")
    assert sql.get(store.conn, "src", "a%") == "1" and sql.get(store.conn, "src", "none") is None
    # code point order on both, and a prefix is a prefix (no LIKE wildcards)
    assert [k for k, _ in sql.items(store.conn, "src")] == ["Z", "a%", "a_", "ab", "b", "\u00e9"]
    assert sql.items(store.conn, "src", "a%") == [("a%", "1")]
    assert [k for k, _ in sql.items(store.conn, "src", "a")] == ["a%", "a_", "ab"]
    with store.write() as db:
        sql.put(db.conn, "src", {"b": "20"}, "t2")
        sql.delete(db.conn, "src", ["a%", "missing"])
    assert sql.get(store.conn, "src", "b") == "20" and sql.get(store.conn, "src", "a%") is None
    assert sql.get(store.conn, "other", "a%") == "9"


def test_plugin_state_on_each_backend(store):
    state = PluginState(lambda: store, "logwatch")
    state.update({"pos:/var/log/a": {"inode": 5, "offset": 10}, "pos:/var/log/b": [1, 2]})
    assert state.get("pos:/var/log/a") == {"inode": 5, "offset": 10}
    assert dict(state.items("pos:")) == {"pos:/var/log/a": {"inode": 5, "offset": 10},
                                         "pos:/var/log/b": [1, 2]}
    state.update({"pos:/var/log/c": 1}, delete=["pos:/var/log/a"])
    assert [k for k, _ in state.items()] == ["pos:/var/log/b", "pos:/var/log/c"]
    with pytest.raises(ValueError, match="limit"):
        state.set("big", "x" * (1 << 20))
