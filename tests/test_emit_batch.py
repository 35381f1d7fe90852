"""The emit path's batching (issue 15): one duplicate-check query per batch, the same
duplicate semantics as a query per event, each event's data serialised once."""

from __future__ import annotations

import json

import pytest

from taskengine_core.engine import Engine
from taskengine_core.errors import EventError
from taskengine_core.events import DUPLICATE_KEYS_PER_QUERY, Event
from tests.backends import connection, db_path, is_postgres, one, rows, sqlite_only  # noqa: F401  (every test on SQLite and on PostgreSQL)


def _selects_on_events(engine: Engine, emit) -> tuple[object, list[str]]:
    statements: list[str] = []
    store = engine._thread_store()
    if getattr(store, "dialect", "sqlite") == "postgresql":  # no trace callback: record what the store functions execute
        execute = store.conn.execute

        def recording(sql, params=None):
            statements.append(sql)
            return execute(sql, params)

        store.conn.execute = recording
        try:
            result = emit()
        finally:
            del store.conn.execute
    else:
        store.conn.set_trace_callback(statements.append)
        try:
            result = emit()
        finally:
            store.conn.set_trace_callback(None)
    return result, [s for s in statements if s.lstrip().upper().startswith(("SELECT", "WITH")) and "events" in s]


def test_one_duplicate_check_query_for_a_batch_of_events_with_source_ids(db_path):
    engine = Engine(db_path)
    events = [Event("go", {"n": i}, source="crm", source_id=f"id-{i}") for i in range(50)]
    _, selects = _selects_on_events(engine, lambda: engine.emit_many(events))
    assert len(selects) == 1


def test_large_batches_check_duplicates_a_chunk_of_keys_per_query(db_path):
    engine = Engine(db_path)
    n = DUPLICATE_KEYS_PER_QUERY * 2 + 1
    first = engine.emit_many([Event("go", source="crm", source_id=f"id-{i}") for i in range(n)])
    again, selects = _selects_on_events(engine, lambda: engine.emit_many(
        [Event("go", source="crm", source_id=f"id-{i}") for i in range(n)]))
    assert len(selects) == 3
    duplicate_of = {r["id"]: r["duplicate_of"] for r in rows(db_path, "SELECT id, duplicate_of FROM events")}
    assert [duplicate_of[i] for i in first] == [None] * n
    assert [duplicate_of[i] for i in again] == first


@sqlite_only("PostgreSQL's text cannot hold NUL: there such an id is refused (test_a_nul_in_a_source_or_id_is_refused_on_postgresql)")
def test_batched_duplicate_check_compares_source_ids_whole(db_path):
    """NUL characters, and ids that differ only after one, stay apart; the first original in
    the inbox wins; duplicates within the batch point at the batch's first of their key."""
    engine = Engine(db_path)
    before = engine.emit_many([Event("go", source="s", source_id="a\x00b"), Event("go", source="s", source_id="a")])
    ids = engine.emit_many([
        Event("go", source="s", source_id="a\x00c"),  # new: differs after the NUL
        Event("go", source="s", source_id="a\x00b"),  # duplicate of before[0]
        Event("go", source="s", source_id="a"),       # duplicate of before[1]
        Event("go", source="t", source_id="a"),       # another source: new
        Event("go", source="s", source_id="a\x00c"),  # duplicate of ids[0], within the batch
        Event("go", source="s"),                      # no source id: never a duplicate
    ])
    duplicate_of = {r["id"]: r["duplicate_of"] for r in rows(db_path, "SELECT id, duplicate_of FROM events")}
    assert [duplicate_of[i] for i in ids] == [None, before[0], before[1], None, ids[0], None]


def test_the_data_stored_is_the_text_that_was_checked(db_path, monkeypatch):
    """Each event's data is serialised once: the check's JSON text is what the inbox stores."""
    import taskengine_core.events as events_module

    calls = []
    real_dumps = json.dumps

    def counting_dumps(value, *args, **kwargs):
        calls.append(value)
        return real_dumps(value, *args, **kwargs)

    monkeypatch.setattr(events_module.json, "dumps", counting_dumps)
    engine = Engine(db_path)
    data = [{"n": i, "text": "Zoë \x00"} for i in range(5)]
    ids = engine.emit_many([Event("go", d) for d in data])
    monkeypatch.undo()
    assert [c for c in calls if c in data] == data  # once each
    stored = {r["id"]: r["data"] for r in rows(db_path, "SELECT id, data FROM events")}
    assert [json.loads(stored[i]) for i in ids] == data


@pytest.mark.parametrize(("event", "message"), [
    (Event("go", {"k": float("nan")}), "invalid event: data.k: nan is not a JSON number"),
    (Event("go", {"k": "\ud800"}), "invalid event: data.k: not valid Unicode (a lone surrogate)"),
    (Event("go", {}, source="\udfff"), "invalid event: source: not valid Unicode (a lone surrogate)"),
    (Event("go", {}, source_id="x\ud800"), "invalid event: id: not valid Unicode (a lone surrogate)"),
    (Event("go", {"k": {1, 2}}), "invalid event: data: not JSON-serialisable"),
])
def test_a_bad_event_in_a_batch_stores_nothing(db_path, event, message):
    engine = Engine(db_path)
    with pytest.raises(EventError) as err:
        engine.emit_many([Event("ok"), event])
    assert str(err.value).startswith(message)
    assert one(db_path, "SELECT count(*) FROM events")[0] == 0


def test_the_evaluator_reads_every_field_as_it_was_emitted(db_path):
    """The evaluator reads a batch as one JSON value built by SQLite: quotes, backslashes, NUL
    characters, non-ASCII text and huge integers come through unchanged."""
    from taskengine_core.store.inbox import claim_waiting, read_events

    engine = Engine(db_path)
    weird = 'q"uo\\te \x00 Zoë 東京 \u2028'
    data = {"big": 2**70, weird: [weird, None, 1.5, {"x": True}]}
    named = weird.replace("\x00", "") if is_postgres(db_path) else weird  # PostgreSQL text holds no NUL (data is JSON)
    engine.emit_many([Event("a.b", data, source=named, source_id=named), Event("c", {})])
    with connection(db_path) as conn:
        read = read_events(conn, [seq for seq, _, _ in claim_waiting(conn, 10)])
    assert [(r["type"], r["source"], r["source_id"], r["data"]) for r in read] == [
        ("a.b", named, named, data), ("c", "api", None, {})]
    assert type(read[0]["data"]["big"]) is int


@pytest.mark.parametrize(("event", "field"), [
    (Event("a\n"), "type"), (Event(""), "type"), (Event("a b"), "type"), (Event("x" * 201), "type"),
    (Event(1), "type"), (Event("a", ["x"]), "data"), (Event("a", source=""), "source"),
    (Event("a", source="s" * 201), "source"), (Event("a", source_id=""), "id"),
    (Event("a", source_id="i" * 201), "id"), (Event("a", source_id=7), "id"),
], ids=["newline", "empty", "space", "long", "int", "data-list", "empty-source", "long-source",
        "empty-id", "long-id", "int-id"])
def test_the_attribute_fast_path_is_as_strict_as_the_schema(db_path, event, field):
    with pytest.raises(EventError) as err:
        Engine(db_path).emit_many([event])
    assert err.value.field == field


def test_a_nul_in_a_source_or_id_is_refused_on_postgresql(postgres_url):
    """PostgreSQL's text cannot hold a NUL: the event names the field, and nothing is stored
    (it used to fail with psycopg's DataError)."""
    engine = Engine(postgres_url)
    try:
        for event, field in ((Event("go", source="s\x00t"), "source"), (Event("go", source_id="a\x00b"), "id")):
            with pytest.raises(EventError) as err:
                engine.emit_many([Event("ok"), event])
            assert err.value.field == field
            assert str(err.value) == (f"invalid event: {field}: contains a NUL character, which a PostgreSQL "
                                      f"database cannot store: remove it")
        assert one(postgres_url, "SELECT count(*) FROM events")[0] == 0
        assert Engine(postgres_url).emit("go", {"text": "a\x00b"}) and one(postgres_url, "SELECT count(*) FROM events")[0] == 1
    finally:
        engine.store.close()


def test_the_ingress_refuses_a_nul_in_an_id_on_postgresql_and_stores_the_rest(postgres_url):
    """422 naming the field, as for any invalid event; events sharing its group commit are stored."""
    import requests

    engine = Engine(postgres_url)
    engine.start(listen="127.0.0.1:0")
    try:
        url = f"http://{engine.ingress.address}/events"
        refused = requests.post(url, json={"type": "go", "id": "a\x00b"}, timeout=10)
        assert refused.status_code == 422
        assert refused.json() == {"error": "invalid event: id: contains a NUL character, which a PostgreSQL "
                                           "database cannot store: remove it", "field": "id"}
        assert requests.post(url, json={"type": "go", "id": "ab"}, timeout=10).status_code == 202
    finally:
        engine.stop(grace=1)
    assert [r["source_id"] for r in rows(postgres_url, "SELECT source_id FROM events")] == ["ab"]
