"""The attempts' total timeouts, kept by one timer per loop (:mod:`taskengine_webhook.deadlines`):
each attempt is cut at its own destination's timeout and reported as a timeout, other
cancellations (the dispatcher stopping) still propagate, and a worker that saw a timeout goes on
sending normally. Real HTTP servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json

import pytest

from taskengine_core.secrets import Redactor
from taskengine_webhook.config import Destination, Preparer, WebhookSettings
from taskengine_webhook.deadlines import Deadlines
from taskengine_webhook.delivery import Message, attempt
from taskengine_webhook.sender import make_session, policy_for
from tests.test_webhook_support import Reply, receiver  # noqa: F401 (fixture)


def _message(n: int) -> Message:
    return Message(f"msg_{n:04d}", "hook", "t", json.dumps({"n": n}), "application/json", {}, 0, 3)


def _dest(url: str, timeout) -> Destination:
    return Destination("hook", True, {"url": url, "timeout": timeout})


async def _session():
    policy = policy_for(WebhookSettings())
    return make_session(policy), policy


def test_each_attempt_is_cut_at_its_own_destinations_timeout(receiver):  # noqa: F811
    slow = receiver([Reply(200, b"late", delay=0.8)])
    prepare = Preparer(lambda v: v, Redactor())

    async def main():
        session, policy = await _session()
        deadlines = Deadlines(asyncio.get_running_loop())
        try:
            return await asyncio.gather(*(
                attempt(session, _dest(slow.url, timeout), _message(n), policy=policy,
                        prepare=prepare, deadlines=deadlines)
                for n, timeout in enumerate((0.2, 5, 0.3, "10s"))))
        finally:
            await session.close()

    short, long, short2, long2 = asyncio.run(main())
    assert short.error == "no response within 0.2s (timeout)" and short.status_code is None
    assert short2.error == "no response within 0.3s (timeout)" and not short2.permanent
    for result in (long, long2):
        assert (result.ok, result.status_code, result.excerpt) == (True, 200, "late")


def test_a_worker_goes_on_after_a_timeout(receiver):  # noqa: F811
    replies = iter([Reply(200, b"late", delay=1.0), Reply(201, b"x" * 10)])
    server = receiver(lambda req: next(replies, Reply(202)))
    prepare = Preparer(lambda v: v, Redactor())

    async def main():
        session, policy = await _session()
        deadlines = Deadlines(asyncio.get_running_loop())
        try:
            out = [await attempt(session, _dest(server.url, 0.3), _message(n), policy=policy,
                                 prepare=prepare, deadlines=deadlines) for n in range(3)]
            # nothing of the timeout is left on the task: a later asyncio timeout still works
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.01):
                    await asyncio.sleep(1)
            return out, asyncio.current_task().cancelling()
        finally:
            await session.close()

    (first, second, third), cancelling = asyncio.run(main())
    assert first.error == "no response within 0.3s (timeout)"
    assert (second.status_code, second.excerpt, third.status_code) == (201, "x" * 10, 202)
    assert cancelling == 0


@pytest.mark.parametrize("with_deadline", [False, True])
def test_stopping_still_cancels_an_attempt(receiver, with_deadline):  # noqa: F811
    """The dispatcher cancels its workers at the end of the grace period: that cancellation is
    not a timeout, also when it comes in the same moment as the deadline's."""
    slow = receiver([Reply(200, b"late", delay=2)])
    prepare = Preparer(lambda v: v, Redactor())

    async def main():
        session, policy = await _session()
        deadlines = Deadlines(asyncio.get_running_loop())
        task = asyncio.ensure_future(attempt(session, _dest(slow.url, 30), _message(1),
                                             policy=policy, prepare=prepare, deadlines=deadlines))
        try:
            while not slow.requests:
                await asyncio.sleep(0.01)
            if with_deadline:  # the sweep as at the deadline, then the stop, in one step
                deadlines._timer_bucket = max(deadlines._buckets)
                deadlines._sweep()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert deadlines._buckets == {} and not deadlines._expired
        finally:
            await session.close()

    asyncio.run(main())


def test_the_one_timer_follows_the_earliest_deadline():
    async def main():
        loop = asyncio.get_running_loop()
        deadlines = Deadlines(loop)
        sleepers = [asyncio.ensure_future(asyncio.sleep(5)) for _ in range(3)]
        await asyncio.sleep(0)
        late = deadlines.start(sleepers[0], 30)
        early = deadlines.start(sleepers[1], 0.1)
        done_in_time = deadlines.start(sleepers[2], 0.05)
        deadlines.finish(sleepers[2], done_in_time)  # finished in time: never cancelled
        await asyncio.sleep(0.3)
        assert sleepers[1].cancelled() and not sleepers[2].done() and not sleepers[0].done()
        assert deadlines._timer is not None and deadlines._timer_bucket == late[0]
        deadlines.finish(sleepers[1], early)
        deadlines.finish(sleepers[0], late)
        assert deadlines._buckets == {}
        for task in sleepers:
            task.cancel()

    asyncio.run(main())
