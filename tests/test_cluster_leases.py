"""Leases on both backends: one holder at a time, renewal by the holder, takeover only after
expiry, and work started and stopped with the lease (taskengine_core/cluster.py)."""

from __future__ import annotations

from datetime import timedelta

from taskengine_core.clock import to_iso
from taskengine_core.cluster import LeasedWork
from taskengine_core.store import leases, open_store
from tests.conftest import FakeClock


def _take(store, name, owner, clock, seconds=30):
    now = clock.now()
    with store.write() as db:
        return leases.acquire(db.conn, name, owner, to_iso(now), to_iso(now + timedelta(seconds=seconds)))


def test_one_holder_until_the_lease_expires(db_target):
    a, b = open_store(db_target), open_store(db_target)
    clock = FakeClock()
    assert _take(a, "source:vm", "node-a", clock)
    assert not _take(b, "source:vm", "node-b", clock)  # held, not expired
    clock.advance(20)
    assert _take(a, "source:vm", "node-a", clock)  # renewed by its holder
    clock.advance(29)
    assert not _take(b, "source:vm", "node-b", clock)  # the renewal moved the expiry on
    clock.advance(2)
    assert _take(b, "source:vm", "node-b", clock)  # node-a stopped renewing: taken over
    assert not _take(a, "source:vm", "node-a", clock)
    [(name, owner, _, acquired)] = leases.holders(a.conn)
    assert (name, owner, acquired) == ("source:vm", "node-b", to_iso(clock.now()))


def test_leased_work_starts_and_stops_with_the_lease(db_target):
    clock = FakeClock()
    events = []

    def work(node):
        def start():
            events.append(("start", node))
            return lambda: events.append(("stop", node))
        return start

    a = LeasedWork("source:poller", "node-a", lambda: open_store(db_target), work("a"), clock=clock, lease=30)
    b = LeasedWork("source:poller", "node-b", lambda: open_store(db_target), work("b"), clock=clock, lease=30)
    store_a, store_b = open_store(db_target), open_store(db_target)
    assert a.step(store_a) and not b.step(store_b)
    assert events == [("start", "a")]
    clock.advance(31)  # node a froze past its lease
    assert b.step(store_b)
    assert not a.step(store_a)  # a wakes up, finds it lost the lease, stops its copy
    assert events == [("start", "a"), ("start", "b"), ("stop", "a")]


def test_a_node_that_cannot_reach_the_database_stops_its_work(db_path):
    clock = FakeClock()
    events = []

    class Broken:
        def write(self):
            raise OSError("connection refused")

    work = LeasedWork("source:x", "node-a", lambda: open_store(db_path),
                      lambda: (events.append("start"), lambda: events.append("stop"))[1], clock=clock)
    assert work.step(open_store(db_path))
    assert not work.step(Broken())
    assert events == ["start", "stop"]


def test_nodes_report_heartbeats(db_target):
    store = open_store(db_target)
    with store.write() as db:
        leases.heartbeat(db.conn, "node-a", "host1", 10, "2026-01-01T00:00:00.000000Z")
        leases.heartbeat(db.conn, "node-a", "host1", 10, "2026-01-01T00:00:05.000000Z")
        leases.heartbeat(db.conn, "node-b", "host2", 11, "2026-01-01T00:00:01.000000Z")
    assert [(n["id"], n["seen_at"][-13:]) for n in leases.nodes(store.conn)] == [
        ("node-a", "00:05.000000Z"), ("node-b", "00:01.000000Z")]
