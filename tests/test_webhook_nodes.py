"""Webhook dispatchers of several engines ("nodes") on one database, on both backends: every
delivery is sent exactly once, and a dead node's deliveries are taken over after its lease."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

import pytest

from taskengine_core.clock import to_iso
from taskengine_core.context import EngineInfo
from taskengine_core.deliveries import open_deliveries
from taskengine_core.store import deliveries as queue
from taskengine_core.store import open_store
from taskengine_webhook import enqueue
from taskengine_webhook.dispatcher import Dispatcher
from tests.test_webhook_support import Reply, receiver, wait_until  # noqa: F401 (fixture)


@pytest.fixture
def database(db_target):
    """The engine's database with one destination, as 'taskengine apply' leaves it."""
    store = open_store(db_target)

    def define(url: str) -> None:
        now = to_iso(datetime.now(timezone.utc))
        with store.write() as db:  # the webhooks table is the configuration's, not this plugin's
            db.conn.execute("INSERT INTO webhooks (name, spec, enabled, created_at, updated_at) "
                            "VALUES (?, ?, 1, ?, ?)", ("hook", f'{{"url": "{url}", "retries": 1}}', now, now))

    yield db_target, store, define
    store.close()


def node(target: str, events: list) -> Dispatcher:
    """One engine's dispatcher, with connections of its own to the shared database."""
    info = EngineInfo(deliveries=open_deliveries(target),
                      emit=lambda type, data=None, **kw: events.append((type, data)) or "e")
    dispatcher = Dispatcher(info, poll=0.05, grace=1)
    dispatcher.start()
    return dispatcher


def statuses(store) -> dict[str, str]:
    return {r["id"]: r["status"] for r in queue.list_deliveries(store.conn, limit=10000)}


def test_three_nodes_send_every_delivery_exactly_once(database, receiver):
    target, store, define = database
    server = receiver([Reply(200, delay=0.01)])
    define(server.url)
    events: list = []
    nodes = [node(target, events) for _ in range(3)]
    try:
        ids = []
        threads = [threading.Thread(target=lambda i=i: ids.extend(
            enqueue(target, "hook", [{"n": i * 100 + k} for k in range(20)]))) for i in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wait_until(lambda: set(statuses(store).values()) == {"delivered"} and len(statuses(store)) == 60,
                   20, "60 deliveries delivered")
    finally:
        for n in nodes:
            n.stop()
    sent = [r.headers["webhook-id"] for r in server.requests]
    assert sorted(sent) == sorted(ids) and len(set(ids)) == 60  # each once, none twice
    assert {len(queue.get_delivery(store.conn, i)["attempt_log"]) for i in ids} == {1}
    assert events == []


def test_a_dead_nodes_deliveries_are_taken_over_after_its_lease(database, receiver):
    target, store, define = database
    server = receiver()
    define(server.url)
    expired, held = enqueue(target, "hook", [{"n": 1}, {"n": 2}])
    now = datetime.now(timezone.utc)
    with store.write() as db:  # a node on another machine claimed both, then died
        queue.claim(db.conn, expired, "otherhost:1:1:1", to_iso(now - timedelta(seconds=1)))
        queue.claim(db.conn, held, "otherhost:1:1:1", to_iso(now + timedelta(hours=1)))
    survivor = node(target, [])
    try:
        wait_until(lambda: statuses(store)[expired] == "delivered", 10, "the expired claim delivered")
    finally:
        survivor.stop()
    assert [r.headers["webhook-id"] for r in server.requests] == [expired]
    assert statuses(store)[held] == "sending"  # its lease is still running: not taken early
