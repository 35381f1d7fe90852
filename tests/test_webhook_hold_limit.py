"""A destination's claimed messages stay within HOLD x concurrency, rides included: their lease
(HOLD x the webhook's timeout and a margin) is only long enough for that many to wait their turn.
A ride in the run's commit between the moment the dispatcher's loop counted what it holds and
its database pass used to be left out of the pass's count, so the pass claimed up to the limit
again on top of the ride's claims, and the last of them outlived its lease in the queue (sent
twice, once by whoever recovered it)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone

from taskengine_core.engine import Engine
from taskengine_webhook import enqueue
from taskengine_webhook.dispatcher import Dispatcher
from taskengine_webhook.passes import HOLD
from tests.test_webhook_support import (  # noqa: F401 (fixtures)
    deliveries, receiver, webhook_rules)


def test_a_pass_counts_what_a_ride_claimed_after_the_loop_counted(applied, receiver, db_path):
    server = receiver()
    applied(webhook_rules(server.url, settings="settings:\n  webhook: {concurrency: 1}\n"))
    host = Engine(db_path)
    enqueue(host.deliveries, "hook", [{"n": i} for i in range(20)])
    dispatcher = Dispatcher(host.info)  # not started: its loop's and threads' steps, in order
    dispatcher._deliveries = host.info.deliveries  # as its thread sets it at start
    loop = dispatcher._loop = asyncio.new_event_loop()
    try:
        dispatcher._publish_held()  # the loop counts...
        with host.deliveries.write() as conn:  # ...a run's commit rides meanwhile...
            ride = dispatcher.ride(conn, {"hook"}, datetime.now(timezone.utc))
        assert ride is not None and len(ride.out.claimed) == HOLD
        ride.committed()
        # ...and the pass runs
        done = dispatcher._pass([], [], {"hook"}, False, True)
        sending = [r for r in deliveries(db_path) if r["status"] == "sending"]
        assert len(sending) <= HOLD * 1, (len(done.claimed), len(sending))
    finally:
        loop.close()
        host.store.close()
