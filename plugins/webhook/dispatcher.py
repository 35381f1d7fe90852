"""The delivery dispatcher: a thread with its own asyncio loop that sends queued deliveries.

Started by the ``engine_started`` hook and stopped by ``engine_stopping``. Each pass of its loop
runs on a dedicated database thread (so the event loop never blocks on SQLite): it looks for
due work in a read transaction (indexed lookups per destination, however many deliveries wait
for later), then, only when there is something to write, one write transaction records the
attempts finished since the last pass and claims due deliveries per destination into that
destination's queue. Up to ``settings.webhook.concurrency`` (default 32)
workers per destination take messages from its queue, one request each at a time, so a slow or
dead destination only ever holds its own workers: it never delays deliveries to the others.

The database is the engine's (``engine.deliveries``, plugin API 2), an SQLite file or a
PostgreSQL server that several engines share: each runs a dispatcher, claims are per row under
a lease, and a result is recorded only while the lease is still this dispatcher's. Deliveries
left ``sending`` by a dead process of this host are put back at start; those of an engine that
died elsewhere once their lease expires, by whichever dispatcher looks first. On stop, requests
in flight get a few seconds to finish; the rest are given back (``pending``, attempt not counted).

On a busy engine the dispatcher makes few commits of its own: when deliveries are committed (in
the executor's step that records the ``webhook.send`` runs' outcomes, or by :mod:`.intake`),
:meth:`Dispatcher.ride` records the attempts finished so far and claims the new deliveries in
that same transaction, and hands what it claimed to the loop once it is committed.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from collections import deque
from dataclasses import replace
from concurrent.futures import ThreadPoolExecutor

from taskengine_core import runs as core_runs
from taskengine_core.context import EngineInfo
from taskengine_core.loop_guard import LoopGuard

from .config import Preparer, WebhookSettings
from .delivery import Attempt, attempt
from .passes import DatabasePasses, _Pass
from .sender import make_session, policy_for

log = logging.getLogger("taskengine.webhook")
PACE = 0.005  # while messages are queued, at most one database pass per this many seconds
RIDE_WAIT = 0.05  # while runs queue deliveries, finished attempts wait this long for a ride
RIDING = 0.2  # rides count as ongoing for this long after the last one
SCAN_GAP = 0.1  # while wake-ups keep coming, at most one look at every destination per this long


class Dispatcher(DatabasePasses):
    """Sends queued deliveries from its own thread and asyncio loop (see the module's docstring);
    its database passes and rides are :class:`~.passes.DatabasePasses`."""

    def __init__(self, info: EngineInfo, *, poll: float = 1.0, grace: float = 5.0,
                 rng: random.Random | None = None) -> None:
        self.info, self.poll, self.grace = info, poll, grace
        self.rng = rng or random.Random()
        self.owner = core_runs.lease_owner()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        # loop-side state (touched only on the loop thread)
        # finished attempts and given-back ids not yet written: appended on the loop thread,
        # taken by the database thread's pass or by a ride (the intake's thread), under _handoff
        self._handoff = threading.Lock()
        self._results: list[Attempt] = []
        self._released: list[str] = []
        self._held: dict[str, int] = {}  # claimed and not finished, per destination (_handoff)
        self._riding: dict[str, int] = {}  # claimed by rides, not yet in the loop's queues (_handoff)
        self._db_lock = threading.Lock()  # one writer of the db-thread state at a time
        self._closing = False  # no more rides (_handoff)
        self._unwritten_since: float | None = None  # monotonic: the oldest unwritten result (_handoff)
        self._last_ride = -RIDING  # monotonic, loop thread
        self._sessions: list = []
        self._hints: set[str] = set()
        self._scan = True
        # monotonic: by then look at every destination (retries due, leases expired), whether
        # or not wake-ups about others keep coming
        self._scan_at = 0.0
        # a database that keeps failing (deleted, full disk): back off, and log once a minute
        self._guard = LoopGuard("webhook dispatcher's database pass", log, first=poll, cap=max(poll, 10.0))
        self._queues: dict[str, deque] = {}  # claimed, waiting for a worker
        self._workers: dict[str, int] = {}  # worker tasks per destination (one request each)
        self._current: dict = {}  # destinations as of the last pass
        self._prepare = Preparer(info.resolve, info.redact)
        self._client: tuple = ()  # (aiohttp session, egress policy) for new requests
        self._tasks: set[asyncio.Task] = set()
        self._stopping = False
        # db-thread state
        self._generation: int | None = None
        self._dests: dict = {}
        self._conf = WebhookSettings()
        self._next_prune = 0.0
        self._pruning, self._pruned = False, 0

    # -- any thread ------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="taskengine-webhooks", daemon=True)
        self._thread.start()
        self._ready.wait(10)

    def wake(self, webhook: str | None = None) -> None:
        """New deliveries (for ``webhook``, or any) are due: look now instead of at the next poll."""
        if self._loop is not None and not self._loop.is_closed():
            try:
                self._loop.call_soon_threadsafe(self._on_wake, webhook)
            except RuntimeError:  # the loop closed meanwhile
                pass

    def stop(self) -> None:
        if self._loop is not None and not self._loop.is_closed():
            try:
                self._loop.call_soon_threadsafe(self._begin_stop)
            except RuntimeError:
                pass
        if self._thread is not None:
            self._thread.join(self.grace + 30)

    # -- the loop thread -------------------------------------------------------------------

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._wake = asyncio.Event()
        self._loop = loop
        try:
            loop.run_until_complete(self._main())
        except Exception:  # noqa: BLE001 - logged; the engine carries on without deliveries
            log.exception("the webhook dispatcher stopped on an error")
        finally:
            self._ready.set()
            loop.close()

    def _on_wake(self, webhook: str | None) -> None:
        if webhook:
            self._hints.add(webhook)
        else:
            self._scan = True
        self._wake.set()

    def _begin_stop(self) -> None:
        self._stopping = True
        self._wake.set()

    async def _main(self) -> None:
        self._deliveries = self.info.deliveries
        if self._deliveries is None:
            raise RuntimeError("the engine gave no delivery queue (EngineInfo.deliveries)")
        pool = ThreadPoolExecutor(1, thread_name_prefix="taskengine-webhooks-db")
        loop = asyncio.get_running_loop()
        unsubscribe = self._deliveries.subscribe(self.wake)
        self._ready.set()
        sessions = self._sessions
        deadline = None
        try:
            await self._recover_until_done(loop, pool)
            while True:
                if self._stopping:
                    deadline = deadline or time.monotonic() + self.grace
                    if not self._tasks:
                        break
                    if time.monotonic() >= deadline:
                        for task in list(self._tasks):
                            task.cancel()
                        await asyncio.gather(*self._tasks, return_exceptions=True)
                        break
                if time.monotonic() >= self._scan_at:
                    self._scan = True
                self._publish_held()  # passes and rides claim up to the limit with it
                riding = not self._stopping and time.monotonic() - self._last_ride < RIDING
                since = self._unwritten_since
                if riding and not self._hints and not self._scan:
                    # the next run's commit records the results (a ride): no commit of our own
                    # unless none comes within RIDE_WAIT
                    left = RIDE_WAIT if since is None else since + RIDE_WAIT - time.monotonic()
                    if left > 0:
                        await self._wait_wake(left)
                        continue
                write = not riding or (since is not None and time.monotonic() - since >= RIDE_WAIT)
                results, released = self._take() if write else ([], [])
                hints, self._hints = self._hints, set()
                scan, self._scan = self._scan, False
                try:
                    done = await loop.run_in_executor(pool, self._pass, results, released, hints,
                                                      scan, not self._stopping)
                except Exception as exc:  # noqa: BLE001 - rolled back; keep everything for the next pass
                    wait = self._guard.failed(exc)
                    self._give_back(results, released)
                    self._hints |= hints
                    self._scan = True
                    await asyncio.sleep(wait)
                    continue
                if self._guard.failures:
                    self._guard.succeeded()
                # a pass sees when the next delivery of any destination is due; a scan, also
                # what hints do not name: look at everything again by then, or after the poll
                scan_at = time.monotonic() + max(done.wait, SCAN_GAP)
                self._scan_at = scan_at if scan else min(self._scan_at, scan_at)
                self._absorb(done)
                if (self._results or self._released) and time.monotonic() - self._last_ride >= RIDING:
                    if any(self._queues.values()) and not self._stopping:
                        await asyncio.sleep(PACE)  # workers are busy: let more finish per pass
                    continue
                wait = done.wait if not self._stopping else 0.05
                if not await self._wait_wake(wait):
                    self._scan = True
            # the last results, and deliveries given back because the engine stops; rides that
            # claimed before the stop began are committed (or rolled back) and taken in first
            with self._handoff:
                self._closing = True
            for _ in range(500):
                with self._handoff:
                    if not any(self._riding.values()):
                        break
                await asyncio.sleep(0.01)
            for queue in self._queues.values():
                self._add_released([m.id for m in queue])
            results, released = self._take()
            await loop.run_in_executor(pool, self._final, results, released)
        finally:
            for session, _ in sessions:
                await session.close()
            unsubscribe()
            pool.shutdown(wait=True)

    async def _recover_until_done(self, loop, pool) -> None:
        """Put back what dead dispatchers left ``sending``; a failing database (locked past its
        timeout, a server restarting) is tried again with the passes' backoff, not the end of
        the dispatcher."""
        while not self._stopping:
            try:
                await loop.run_in_executor(pool, self._recover)
                break
            except Exception as exc:  # noqa: BLE001 - logged by the guard; tried again
                retry_at = time.monotonic() + self._guard.failed(exc)
                while not self._stopping and time.monotonic() < retry_at:  # wake-ups wait too
                    await self._wait_wake(retry_at - time.monotonic())
        if self._guard.failures:
            self._guard.succeeded()

    async def _wait_wake(self, timeout: float) -> bool:
        """Wait for a wake-up, at most ``timeout`` seconds; whether one came."""
        try:
            await asyncio.wait_for(self._wake.wait(), timeout=max(0.001, timeout))
            return True
        except asyncio.TimeoutError:
            return False
        finally:
            self._wake.clear()

    def _take(self) -> tuple[list, list]:
        with self._handoff:
            results, self._results = self._results, []
            released, self._released = self._released, []
            self._unwritten_since = None
        return results, released

    def _give_back(self, results: list, released: list) -> None:
        with self._handoff:
            self._results[:0], self._released[:0] = results, released
            if (results or released) and self._unwritten_since is None:
                self._unwritten_since = time.monotonic()

    def _add_released(self, ids: list[str]) -> None:
        with self._handoff:
            self._released += ids
            if self._unwritten_since is None:
                self._unwritten_since = time.monotonic()

    def _publish_held(self) -> None:
        """Claimed messages per destination (queued or in flight, or claimed by a ride that the
        loop has not taken in yet), published for passes and rides (rides add their claims)."""
        held = {n: self._workers.get(n, 0) + len(q) for n, q in self._queues.items()}
        with self._handoff:
            for name, count in self._riding.items():
                held[name] = held.get(name, 0) + count
            self._held = held

    def _absorb(self, done: _Pass) -> None:
        """Take in what a pass or a ride found (loop thread): destinations, settings, claims."""
        if done.dests is not None:
            self._current = done.dests
        if done.settings is not None or not self._sessions:  # new egress rules: new client
            policy = policy_for(done.settings or self._conf)
            self._sessions.append((make_session(policy), policy))
            self._client = self._sessions[-1]
        self._hints |= done.more
        for message in done.claimed:
            self._queues.setdefault(message.webhook, deque()).append(message)
        self._start_workers()

    def _adopt(self, done: _Pass) -> None:
        """A ride's claims, now committed, join the queues (loop thread)."""
        self._last_ride = time.monotonic()
        with self._handoff:
            for message in done.claimed:
                self._riding[message.webhook] -= 1
        if self._stopping:  # too late to send them: given back at the end of _main
            for message in done.claimed:
                self._queues.setdefault(message.webhook, deque()).append(message)
            self._wake.set()
            return
        self._absorb(done)
        self._publish_held()
        self._wake.set()

    def _start_workers(self) -> None:
        """Up to ``concurrency`` workers per destination, each sending one message at a time
        from the destination's queue of claimed messages (every worker is mid-request now)."""
        for name, queue in self._queues.items():
            dest = self._current.get(name)
            if dest is None or not dest.enabled:  # deleted or disabled (410) meanwhile
                self._add_released([m.id for m in queue])
                queue.clear()
                continue
            busy = self._workers.get(name, 0)
            for _ in range(min(self._conf.concurrency - busy, len(queue))):
                self._workers[name] = self._workers.get(name, 0) + 1
                task = asyncio.ensure_future(self._worker(name))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _worker(self, name: str) -> None:
        try:
            while not self._stopping:
                queue, dest = self._queues.get(name), self._current.get(name)
                if not queue or dest is None or not dest.enabled:
                    return
                message = queue.popleft()
                session, policy = self._client
                try:
                    result = await attempt(session, dest, message, policy=policy,
                                           prepare=self._prepare)
                except asyncio.CancelledError:
                    self._add_released([message.id])
                    raise
                except Exception:  # noqa: BLE001 - a bug must not leave it claimed forever
                    log.exception("webhook %s: delivery %s: unexpected error", name, message.id)
                    self._add_released([message.id])
                    continue
                with self._handoff:
                    self._results.append(result)
                    if self._unwritten_since is None:
                        self._unwritten_since = time.monotonic()
                if result.gone:  # 410: no more to it, starting now, not at the next pass
                    self._current[name] = replace(dest, enabled=False)
                self._wake.set()
        finally:
            self._workers[name] -= 1
            self._wake.set()
