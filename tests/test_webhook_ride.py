"""The dispatcher rides in the intake's transaction: the deliveries a ``webhook.send`` queues are
claimed by its engine's dispatcher in the very commit that queues them (no commit of the
dispatcher's own), and a failure of that part never costs the run its delivery."""

from __future__ import annotations

from taskengine_webhook import intake
from taskengine_webhook.dispatcher import Dispatcher
from taskengine_webhook.running import dispatchers_of

from tests.test_webhook_support import (  # noqa: F401 (fixtures)
    FAST, Reply, attempts, deliveries, engine, query, receiver, wait_status, wait_until, webhook_rules)


def row(i: int) -> dict:
    return {"id": f"msg_ride{i}", "webhook": "hook", "type": "t", "body": "{}",
            "content_type": "application/json"}


def test_queued_deliveries_are_claimed_in_the_same_commit(applied, engine, receiver, db_path):
    server = receiver([Reply(delay=30)])  # holds each request until the test ends
    applied(webhook_rules(server.url))
    e = engine()
    owner = dispatchers_of(e.deliveries)[0].owner
    taken = []
    for i in range(20):  # the dispatcher may be in a pass of its own: then it is woken instead
        if intake.commit(e.deliveries, "hook", [row(i)]):
            # claimed when the commit returned: already 'sending' under this engine's lease
            found = query(db_path, "SELECT status, lease_owner FROM webhook_deliveries WHERE id = ?",
                          (f"msg_ride{i}",))
            assert found == [{"status": "sending", "lease_owner": owner}]
            taken.append(i)
            break
        wait_until(lambda: server.requests, what="the first request")
    assert taken, "no commit was ridden by the engine's dispatcher"
    wait_until(lambda: any(r.headers.get("webhook-id") == f"msg_ride{taken[0]}" for r in server.requests),
               what="the ridden delivery sent")


def test_a_failing_ride_leaves_the_delivery_queued_and_sent(applied, engine, receiver, db_path,
                                                            monkeypatch):
    server = receiver()
    applied(webhook_rules(server.url, extra="    retries: 0"))
    e = engine()
    calls = []
    claim = Dispatcher._claim

    def broken(self, conn, names, held, now, out):
        if not calls:
            calls.append(names)
            raise RuntimeError("injected failure inside the ride")
        return claim(self, conn, names, held, now, out)

    monkeypatch.setattr(Dispatcher, "_claim", broken)
    for i in range(20):
        assert intake.commit(e.deliveries, "hook", [row(i)]) in (True, False)  # never raises
        if calls:
            break
        wait_status(db_path, f"msg_ride{i}", ["delivered"])
    assert calls, "no ride happened"
    failed = f"msg_ride{i}"
    # rolled back to the savepoint only: the row is queued, and the dispatcher's own pass sends it
    assert wait_status(db_path, failed, ["delivered"])["status"] == "delivered"
    assert len(attempts(db_path, failed)) == 1
