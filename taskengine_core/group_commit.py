"""Group commit for the HTTP ingress: the events of concurrent requests share one transaction.

Everything here runs on the ingress's event loop thread. A request adds its event and awaits
the future it gets back; that future resolves to the event's id once the event is committed.
A commit costs about the same for one event as for sixteen, so when the ingress is busy (the
last batch had company) a commit waits a few loop passes first: the requests whose bytes are
already on their sockets are read and join it. When the ingress is quiet an event is committed
on the next pass, alone.

The commit itself runs on the loop's thread too: it takes well under a millisecond, and handing
it to another thread costs more, in waits for the GIL, than it saves. But it never waits for a
lock there: when another thread or process holds the database's write lock (a prune, ``apply``,
a ``sqlite3`` shell), the store raises :class:`StoreBusy` at once and the batch is committed
from a worker thread, which waits; the loop keeps reading requests and answering ``/healthz``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Callable

from taskengine_core.errors import StoreBusy, StoreError, TaskEngineError
from taskengine_core.events import Event

log = logging.getLogger("taskengine.ingress")

MAX_BATCH = 500
# Loop passes a busy ingress lets a batch fill: in the first, requests already waiting on their
# sockets are read; in the next, their handlers add them. Measured with 16 connections:
# 2 passes 31% of the constant-202 ceiling, 4: 38%, 16: 42%, 32: 37% (before other changes).
GATHER = 16


class GroupCommit:
    def __init__(self, loop: asyncio.AbstractEventLoop, store: Callable[[list[Event]], list[str]]) -> None:
        """``store`` commits events in one transaction and returns their ids, or raises."""
        self._loop, self._store = loop, store
        self._waiting: list[tuple[Event, asyncio.Future]] = []
        self._scheduled = False
        self._crowded = False  # the last batch had more than one event
        self._idle = asyncio.Event()
        self._idle.set()

    def add(self, event: Event) -> asyncio.Future:
        future = self._loop.create_future()
        self._waiting.append((event, future))
        if not self._scheduled:
            self._scheduled = True
            self._idle.clear()
            self._loop.call_soon(self._pass, GATHER if self._crowded else 0)
        return future

    async def flush(self) -> None:
        """Return once every event added so far is committed (or refused)."""
        await self._idle.wait()

    def _pass(self, passes_left: int) -> None:
        if passes_left:
            self._loop.call_soon(self._pass, passes_left - 1)
            return
        batch, self._waiting = self._waiting[:MAX_BATCH], self._waiting[MAX_BATCH:]
        self._crowded = len(batch) > 1
        results = self._commit([event for event, _ in batch])
        if isinstance(results, StoreBusy):
            self._loop.create_task(self._commit_in_thread(batch))
            return  # still scheduled: the next pass follows once the thread is done
        _settle([future for _, future in batch], results)
        self._next()

    async def _commit_in_thread(self, batch: list[tuple[Event, asyncio.Future]]) -> None:
        events = [event for event, _ in batch]
        try:
            results = await asyncio.to_thread(self._commit, events)
        except BaseException as exc:  # noqa: BLE001 - every waiting request gets an answer
            results = [TaskEngineError(f"{type(exc).__name__}: {exc}")] * len(events)
        if isinstance(results, StoreBusy):  # cannot happen with a waiting store; answer anyway
            results = [results] * len(events)
        _settle([future for _, future in batch], results)
        self._next()

    def _next(self) -> None:
        if self._waiting:
            self._loop.call_soon(self._pass, 0)
        else:
            self._scheduled = False
            self._idle.set()

    def _commit(self, events: list[Event]) -> list | StoreBusy:
        """One result per event: its id, or the error that kept it out. If an event (not the
        database) fails the batch, the others are committed one by one. :class:`StoreBusy`
        when the store would have had to wait."""
        results = self._try(events)
        if not isinstance(results, TaskEngineError):
            return results
        if isinstance(results, StoreBusy):
            return results  # the caller commits the batch where waiting is allowed
        if len(events) > 1 and not isinstance(results, StoreError):
            singles = [self._try([event]) for event in events]
            return [r if isinstance(r, TaskEngineError) else r[0] for r in singles]
        return [results] * len(events)

    def _try(self, events: list[Event]) -> list[str] | TaskEngineError:
        try:
            return self._store(events)
        except TaskEngineError as exc:
            return exc
        except Exception as exc:  # noqa: BLE001 - every waiting request gets an answer
            log.exception("storing %d events failed", len(events))
            return TaskEngineError(f"{type(exc).__name__}: {exc}")


def _settle(futures: list[asyncio.Future], results: list) -> None:
    for future, result in zip(futures, results):
        if not future.done():  # done: the request was cancelled
            (future.set_exception if isinstance(result, BaseException) else future.set_result)(result)
