"""taskengine_core.store.deliveries on both backends (SQLite, then PostgreSQL): queueing, leased
claims that two engines never share, results recorded only under the caller's lease, recovery
of expired leases from any node, orphans, redelivery, listing and pruning."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

import pytest

from taskengine_core.clock import to_iso
from taskengine_core.deliveries import Deliveries, deliveries_for
from taskengine_core.store import open_store
from taskengine_core.store import deliveries as queue

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=timezone.utc)


def at(seconds: float = 0) -> str:
    return to_iso(T0 + timedelta(seconds=seconds))


@pytest.fixture
def store(db_target):
    s = open_store(db_target)
    with s.write() as db:  # destinations as 'taskengine apply' leaves them (not this module's table)
        db.conn.executemany(
            "INSERT INTO webhooks (name, spec, enabled, created_at, updated_at) VALUES (?, ?, ?, ?, ?)",
            [("a", '{"url": "http://127.0.0.1:9/a", "retries": 2}', 1, at(), at()),
             ("b", '{"url": "http://127.0.0.1:9/b"}', 1, at(), at())])
    yield s
    s.close()


def rows(n: int, webhook: str = "a", prefix: str = "m") -> list[dict]:
    return [{"id": f"{prefix}{i:04d}", "webhook": webhook, "type": "t", "body": f'{{"n": {i}}}',
             "content_type": "application/json", "headers": {"X-N": str(i)}, "max_attempts": 3,
             "task": "job", "run_id": f"r{i}"} for i in range(n)]


def enqueue(store, items: list[dict], now: str = at()) -> None:
    with store.write() as db:
        queue.enqueue(db.conn, items, now)


def outcome(delivery_id: str, status: str, number: int = 1, code: int | None = 200) -> dict:
    return {"id": delivery_id, "status": status, "attempts": number, "next_attempt_at": at(60),
            "finished_at": None if status == "pending" else at(1),
            "attempt": {"number": number, "request_id": f"req{number}", "started_at": at(),
                        "duration": 0.01, "address": "127.0.0.1", "status_code": code,
                        "outcome": "succeeded" if code == 200 else "failed",
                        "error": None if code == 200 else f"HTTP {code}", "response_excerpt": "ok",
                        "request_headers": {"webhook-id": delivery_id},
                        "next_attempt_at": None if status != "pending" else at(60)}}


def test_enqueue_list_and_show(store):
    enqueue(store, rows(3))
    enqueue(store, [{**rows(1)[0], "body": "changed"}])  # a known id is left as it is (re-run)
    listed = queue.list_deliveries(store.conn)
    assert [r["id"] for r in listed] == ["m0002", "m0001", "m0000"]
    assert {r["status"] for r in listed} == {"pending"} and listed[0]["next_attempt_at"] == at()
    shown = queue.get_delivery(store.conn, "m0000")
    assert shown["body"] == '{"n": 0}' and shown["headers"] == {"X-N": "0"}
    assert shown["attempt_log"] == [] and "lease_owner" not in shown
    assert queue.get_delivery(store.conn, "nope") is None
    assert queue.status_of(store.conn, "m0001") == ("a", "pending")
    assert queue.list_deliveries(store.conn, webhook="b") == []


def test_claim_takes_due_deliveries_oldest_first_once(store):
    enqueue(store, rows(5), at(0))
    enqueue(store, rows(2, prefix="later"), at(100))
    enqueue(store, rows(2, webhook="b", prefix="other"), at(0))
    with store.write() as db:
        first = queue.claim_due(db.conn, "a", 3, at(10), "node1", at(80))
    assert len(first) == 3 and {m["webhook"] for m in first} == {"a"}
    assert first[0]["headers"] == {"X-N": first[0]["id"][-1]} and first[0]["attempts"] == 0
    with store.write() as db:
        rest = queue.claim_due(db.conn, "a", 10, at(10), "node2", at(80))
    assert sorted(m["id"] for m in first + rest) == [f"m{i:04d}" for i in range(5)]  # not the later ones
    with store.write() as db:
        assert queue.claim_due(db.conn, "a", 10, at(10), "node2", at(80)) == []
        assert queue.claim(db.conn, "m0000", "cli", at(80)) is None  # sending: not pending
        assert queue.claim(db.conn, "later0000", "cli", at(80))["id"] == "later0000"
    assert queue.status_of(store.conn, "m0000") == ("a", "sending")


def test_finding_due_work(store):
    enqueue(store, rows(1), at(0))
    enqueue(store, rows(1, webhook="b", prefix="b"), at(50))
    assert queue.due_webhooks(store.conn, at(10), ["a", "b", "c"]) == {"a"}
    assert queue.pending_webhooks(store.conn) == {"a", "b"}
    assert queue.next_due(store.conn, at(10)) == at(50)
    assert queue.next_due(store.conn, at(60)) is None


def test_results_are_recorded_only_under_the_callers_lease(store):
    enqueue(store, rows(2))
    with store.write() as db:
        queue.claim_due(db.conn, "a", 2, at(), "node1", at(80))
    with store.write() as db:  # node2 never held these: nothing changes, no attempt row
        assert queue.record(db.conn, [outcome("m0000", "delivered")], "node2") == set()
    assert queue.status_of(store.conn, "m0000") == ("a", "sending")
    with store.write() as db:
        kept = queue.record(db.conn, [outcome("m0000", "delivered"),
                                      outcome("m0001", "pending", code=500)], "node1")
    assert kept == {"m0000", "m0001"}
    done = queue.get_delivery(store.conn, "m0000")
    assert (done["status"], done["attempts"], done["last_status_code"], done["finished_at"]) == (
        "delivered", 1, 200, at(1))
    assert [(a["number"], a["outcome"], a["request_headers"]) for a in done["attempt_log"]] == [
        (1, "succeeded", {"webhook-id": "m0000"})]
    retry = queue.get_delivery(store.conn, "m0001")
    assert (retry["status"], retry["next_attempt_at"], retry["last_error"]) == ("pending", at(60), "HTTP 500")
    with store.write() as db:  # recorded once: a second report of the same attempt is ignored
        assert queue.record(db.conn, [outcome("m0000", "failed")], "node1") == set()
    assert queue.status_of(store.conn, "m0000") == ("a", "delivered")


def test_expired_leases_and_dead_owners_are_recovered_once(store):
    enqueue(store, rows(3))
    with store.write() as db:
        queue.claim(db.conn, "m0000", "dead-node", at(30))
        queue.claim(db.conn, "m0001", "live-node", at(300))
        queue.claim(db.conn, "m0002", "gone-process", at(300))
    assert sorted(queue.lease_holders(store.conn)) == [
        ("dead-node", at(30)), ("gone-process", at(300)), ("live-node", at(300))]
    with store.write() as db:
        assert queue.recover(db.conn, at(20)) == []  # nothing expired yet
        assert sorted(queue.recover(db.conn, at(60), ["gone-process"])) == ["m0000", "m0002"]
        assert queue.recover(db.conn, at(60), ["gone-process"]) == []
    shown = queue.get_delivery(store.conn, "m0000")
    assert (shown["status"], shown["next_attempt_at"]) == ("pending", at(60))
    assert queue.status_of(store.conn, "m0001") == ("a", "sending")
    with store.write() as db:  # the dead node's late result no longer counts
        assert queue.record(db.conn, [outcome("m0000", "delivered")], "dead-node") == set()


def test_release_gives_back_only_the_owners_claims(store):
    enqueue(store, rows(2))
    with store.write() as db:
        queue.claim(db.conn, "m0000", "node1", at(80))
        queue.claim(db.conn, "m0001", "node2", at(80))
        assert queue.release(db.conn, ["m0000", "m0001"], "node1") == 1
    assert queue.status_of(store.conn, "m0000") == ("a", "pending")
    assert queue.status_of(store.conn, "m0001") == ("a", "sending")
    assert queue.get_delivery(store.conn, "m0000")["attempts"] == 0


def test_orphans_of_a_deleted_destination_fail(store):
    enqueue(store, rows(2, webhook="gone") + rows(1, prefix="kept"))
    with store.write() as db:
        failed = queue.fail_orphans(db.conn, at(5), ["gone", "a"], "removed")
    assert sorted((f["id"], f["webhook"], f["task"], f["attempts"]) for f in failed) == [
        ("m0000", "gone", "job", 0), ("m0001", "gone", "job", 0)]
    shown = queue.get_delivery(store.conn, "m0000")
    assert (shown["status"], shown["last_error"], shown["finished_at"]) == ("failed", "removed", at(5))
    assert queue.status_of(store.conn, "kept0000") == ("a", "pending")


def test_redeliver_requeues_a_finished_delivery_but_not_one_being_sent(store):
    enqueue(store, rows(2))
    with store.write() as db:
        queue.claim_due(db.conn, "a", 2, at(), "node1", at(80))
        queue.record(db.conn, [outcome("m0000", "exhausted", number=3, code=500)], "node1")
    with store.write() as db:
        assert queue.redeliver(db.conn, "m0000", 2, at(100)) == {
            "status": "pending", "webhook": "a", "previous": "exhausted"}
        assert queue.redeliver(db.conn, "m0001", 2, at(100)) == {"status": "sending", "webhook": "a"}
        assert queue.redeliver(db.conn, "nope", 2, at(100)) is None
    again = queue.get_delivery(store.conn, "m0000")
    assert (again["status"], again["max_attempts"], again["next_attempt_at"], again["finished_at"]) == (
        "pending", 6, at(100), None)


def test_list_filters_by_status(store):
    enqueue(store, rows(3))
    with store.write() as db:
        queue.claim_due(db.conn, "a", 1, at(), "node1", at(80))
        [claimed] = [r["id"] for r in queue.list_deliveries(db.conn, status="sending")]
        queue.record(db.conn, [outcome(claimed, "delivered")], "node1")
    assert [r["id"] for r in queue.list_deliveries(store.conn, status="delivered")] == [claimed]
    assert queue.list_deliveries(store.conn, status="delivered")[0]["next_attempt_at"] is None
    assert len(queue.list_deliveries(store.conn, status="pending", limit=1)) == 1


def test_prune_deletes_finished_deliveries_and_their_attempts(store):
    enqueue(store, rows(3), at(0))
    with store.write() as db:
        queue.claim_due(db.conn, "a", 2, at(), "node1", at(80))
        queue.record(db.conn, [outcome("m0000", "delivered"), outcome("m0001", "failed", code=410)], "node1")
    with store.write() as db:
        assert queue.prune(db.conn, at(0)) == 0  # finished at at(1): not before at(0)
        assert queue.prune(db.conn, at(2), limit=1) == 1
        assert queue.prune(db.conn, at(2)) == 1
    assert [r["id"] for r in queue.list_deliveries(store.conn)] == ["m0002"]  # pending: kept
    assert queue.get_delivery(store.conn, "m0000") is None


def test_destinations(store):
    assert sorted(n for n, _, _ in queue.destinations(store.conn)) == ["a", "b"]
    assert [(n, e) for n, _, e in queue.destinations(store.conn, ["b", "zzz"])] == [("b", 1)]


def test_the_facade_reads_writes_and_signals(store):
    deliveries = deliveries_for(store)
    assert deliveries_for(deliveries) is deliveries
    heard: list = []
    unsubscribe = deliveries.subscribe(heard.append)
    with deliveries.write() as conn:
        queue.enqueue(conn, rows(1), at())
    deliveries.queued("a")
    unsubscribe()
    deliveries.queued("b")
    assert heard == ["a"]
    with deliveries.read() as conn:
        assert queue.pending_webhooks(conn) == {"a"}


def test_the_facade_opens_a_connection_per_thread(db_target, store):
    deliveries = deliveries_for(db_target)
    seen = []

    def work(i: int) -> None:
        with deliveries.write() as conn:
            queue.enqueue(conn, rows(1, prefix=f"t{i}-"), at())
        seen.append(id(deliveries.store()))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert isinstance(deliveries, Deliveries) and len(set(seen)) == 3
    assert len(queue.list_deliveries(store.conn)) == 3


def test_concurrent_claims_never_share_a_delivery(db_target, store):
    """Four engines claim at once, each holding its transaction open a moment (on PostgreSQL
    the candidates are locked FOR UPDATE SKIP LOCKED, so the others take other rows)."""
    enqueue(store, rows(200))
    claimed: dict[int, list[str]] = {}
    barrier = threading.Barrier(4)
    errors: list = []

    def engine(n: int) -> None:
        own = open_store(db_target, migrate=False)
        try:
            barrier.wait()
            got: list[str] = []
            while True:
                with own.write() as db:
                    batch = queue.claim_due(db.conn, "a", 7, at(10), f"node{n}", at(80))
                    threading.Event().wait(0.002)  # the claim's locks are held meanwhile
                if not batch:
                    break
                got += [m["id"] for m in batch]
            claimed[n] = got
        except Exception as exc:  # noqa: BLE001 - the assertion shows it
            errors.append(exc)
        finally:
            own.close()

    threads = [threading.Thread(target=engine, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    every = [i for got in claimed.values() for i in got]
    assert len(every) == len(set(every)) == 200
    assert sum(1 for got in claimed.values() if got) >= 2  # they really worked side by side
    holders = dict(queue.lease_holders(store.conn))
    assert sorted(holders) == sorted(f"node{n}" for n, got in claimed.items() if got)


def test_concurrent_recovery_requeues_each_delivery_once(db_target, store):
    enqueue(store, rows(50))
    with store.write() as db:
        queue.claim_due(db.conn, "a", 50, at(), "dead-node", at(30))
    recovered: list = []
    barrier = threading.Barrier(3)

    def node() -> None:
        own = open_store(db_target, migrate=False)
        try:
            barrier.wait()
            with own.write() as db:
                recovered.extend(queue.recover(db.conn, at(60)))
        finally:
            own.close()

    threads = [threading.Thread(target=node) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(recovered) == [f"m{i:04d}" for i in range(50)]


def test_a_savepoint_undoes_only_its_own_part_of_the_transaction(store):
    # the dispatcher's ride: what it writes in the intake's transaction may fail without
    # costing the runs their queued deliveries (PostgreSQL would otherwise abort them all)
    with store.write() as db:
        queue.enqueue(db.conn, rows(2), at())
        with pytest.raises(ZeroDivisionError):
            with queue.savepoint(db.conn, "webhook_ride"):
                assert len(queue.claim_due(db.conn, "a", 5, at(), "node-1", at(60))) == 2
                queue.enqueue(db.conn, rows(1, prefix="x"), at())
                1 / 0
        with queue.savepoint(db.conn, "webhook_ride"):  # usable again after the failure
            assert [m["id"] for m in queue.claim_due(db.conn, "a", 1, at(), "node-1", at(60))] == ["m0000"]
    listed = {d["id"]: d["status"] for d in queue.list_deliveries(store.conn)}
    assert listed == {"m0000": "sending", "m0001": "pending"}
