"""Each attempt's total timeout (the destination's ``timeout``), for every request in flight on
one event loop, kept by one timer.

aiohttp's own per-request timeout arms a loop timer for each request and cancels it when the
response is released: a ``TimerHandle``, a ``TimerContext`` and their bookkeeping, about 6 µs
of the ~90 µs of CPU a request costs the client. Here an attempt only notes its deadline in a
bucket of :data:`TICK` seconds; the one timer fires when the earliest bucket holding an
unfinished attempt falls due, and cancels those attempts' tasks, which is what aiohttp's timeout
does too (it then turns the cancellation into ``asyncio.TimeoutError``; the attempt does that
here, with :meth:`Deadlines.expired`). Attempts that finish in time leave nothing behind, so on
a receiver that answers the timer hardly ever runs. A deadline is met at most :data:`TICK` late
(aiohttp rounds deadlines of 5 s or more up to the next whole second of the loop's clock).
"""

from __future__ import annotations

import asyncio
import math

TICK = 0.05  # seconds: the granularity of deadlines


class Deadlines:
    """The deadlines of the attempts running on one event loop (use it from that loop only)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._buckets: dict[int, set[asyncio.Task]] = {}  # bucket number (time / TICK) -> tasks
        self._expired: set[asyncio.Task] = set()  # cancelled for their deadline, not yet told
        self._timer: asyncio.TimerHandle | None = None
        self._timer_bucket = math.inf

    def start(self, task: asyncio.Task, seconds: float) -> tuple[int, int]:
        """``task`` must finish within ``seconds``; returns the token for :meth:`expired` and
        :meth:`finish`."""
        bucket = math.ceil((self._loop.time() + seconds) / TICK)
        tasks = self._buckets.get(bucket)
        if tasks is None:
            tasks = self._buckets[bucket] = set()
            if bucket < self._timer_bucket:
                self._arm(bucket)
        tasks.add(task)
        return bucket, task.cancelling()

    def expired(self, task: asyncio.Task, token: tuple[int, int]) -> bool:
        """Whether the ``CancelledError`` that ``task`` is handling came from its deadline and
        nothing else (not the dispatcher stopping): the deadline's cancellation is withdrawn,
        and when no other is pending the caller reports a timeout instead of re-raising."""
        if task not in self._expired:
            return False
        self._expired.discard(task)
        return task.uncancel() <= token[1]

    def finish(self, task: asyncio.Task, token: tuple[int, int]) -> None:
        """``task``'s attempt is over (in time or not)."""
        bucket = token[0]
        tasks = self._buckets.get(bucket)
        if tasks is not None:
            tasks.discard(task)
            if not tasks:
                del self._buckets[bucket]
        if task in self._expired:
            self._expired.discard(task)
            # cancelled for its deadline, but the cancellation never reached the attempt (the
            # request completed regardless): withdraw it, so it cannot hit the next one
            task.uncancel()

    def _arm(self, bucket: int) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_bucket = bucket
        self._timer = self._loop.call_at(bucket * TICK, self._sweep)

    def _sweep(self) -> None:
        due = max(self._timer_bucket, math.floor(self._loop.time() / TICK))
        self._timer, self._timer_bucket = None, math.inf
        for bucket in [b for b in self._buckets if b <= due]:
            for task in self._buckets.pop(bucket):
                if not task.done() and task not in self._expired:
                    self._expired.add(task)
                    task.cancel()
        if self._buckets:
            self._arm(min(self._buckets))
