"""Committing new deliveries: many threads, few transactions.

In an engine, ``webhook.send``'s delivery is written by :class:`DeliveryWriter` in the
transaction that records the run's outcome (:mod:`taskengine_core.outcome_writes`): one commit
per executor step for every run that finished in it, the dispatcher riding along.

Everything else that queues deliveries (``taskengine_webhook.enqueue``, the action in a context
no executor made) goes through :func:`commit`, which must not return before the delivery is
committed. If each caller opened its own write transaction, sixteen threads would queue on SQLite's
write lock, whose busy handler sleeps in steps of milliseconds. Instead, the first thread to
arrive writes every delivery waiting at that moment in one transaction while the others wait on
a condition; then each returns (or raises its own error). Durability is unchanged: nobody
returns before the transaction holding its row is committed.

Commits are the bottleneck (with ``synchronous=FULL`` each one waits for an fsync, ~4 ms here,
and the engine's writers take turns), so a transaction does as much as it can:

* the writer takes the waiting deliveries only once its transaction has begun, so every thread
  that arrived while it waited for the write lock joins this commit;
* the engine's dispatcher rides along (:meth:`Dispatcher.ride`): in the same transaction it
  records the attempts finished since its last write and claims the deliveries just queued, so
  on a busy engine a delivery costs no commit of the dispatcher's own.
"""

from __future__ import annotations

import logging
import threading
import weakref
from dataclasses import dataclass
from datetime import datetime, timezone

from taskengine_core.deliveries import Deliveries, deliveries_for
from taskengine_core.errors import ActionError
from taskengine_core.outcome_writes import Written

from . import store as db

log = logging.getLogger("taskengine.webhook")


@dataclass
class _Entry:
    webhook: str
    rows: list[dict]  # without max_attempts: that comes from the destination
    done: bool = False
    error: BaseException | None = None
    taken: bool = False  # claimed by this engine's dispatcher in the same transaction


class _Intake:
    def __init__(self, deliveries: Deliveries) -> None:
        # weak: the intakes are kept per queue, and a queue must be free to go with its engine
        self._deliveries = weakref.ref(deliveries)
        self._cond = threading.Condition()
        self._pending: list[_Entry] = []
        self._writing = False

    def submit(self, webhook: str, rows: list[dict]) -> bool:
        entry = _Entry(webhook, rows)
        with self._cond:
            self._pending.append(entry)
            while not entry.done and self._writing:
                self._cond.wait()
            if entry.done:
                if entry.error is not None:
                    raise entry.error
                return entry.taken
            self._writing = True
        batch: list[_Entry] = []  # filled once the transaction has begun (see _write)
        try:
            self._write(batch)
        except BaseException as exc:  # noqa: BLE001 - every waiting caller gets the error
            with self._cond:
                if not batch:  # failed before it took the batch: those waiting get the error
                    batch[:], self._pending = self._pending, []
            for e in batch:
                e.error = e.error or exc
        finally:
            with self._cond:
                for e in batch:
                    e.done = True
                self._writing = False
                self._cond.notify_all()
        if entry.error is not None:
            raise entry.error
        return entry.taken

    def _write(self, batch: list[_Entry]) -> None:
        """One transaction on the writing thread's own connection for everybody's rows: those
        waiting once it has begun are put in ``batch``."""
        deliveries = self._deliveries()
        if deliveries is None:  # pragma: no cover - the submitting caller holds it
            raise RuntimeError("the delivery queue is gone")
        riders = []
        try:
            with deliveries.write() as conn:
                with self._cond:
                    batch[:], self._pending = self._pending, []
                now = datetime.now(timezone.utc)
                names = _enqueue(conn, batch, now)
                riders = _riders(deliveries, conn, names, now)
        except BaseException:
            for rider in riders:
                rider.rolled_back()
            raise
        taken = _committed(riders)  # whatever happens now, the senders' rows are stored
        for e in batch:
            e.taken = e.error is None and e.webhook in taken


def _enqueue(conn, batch: list[_Entry], now: datetime) -> set[str]:
    """Insert the batch's deliveries; returns the destinations that got some."""
    found = db.destinations(conn, {e.webhook for e in batch})
    rows = []
    for e in batch:
        dest = found.get(e.webhook)
        if dest is None:
            e.error = ActionError(f"no webhook named {e.webhook!r}; define it under "
                                  "'webhooks:' and run 'taskengine apply'", retryable=False)
        elif not dest.enabled:
            e.error = ActionError(f"webhook {e.webhook!r} is disabled; 'taskengine webhooks "
                                  f"enable {e.webhook}' turns it back on", retryable=False)
        else:
            rows += [{**r, "max_attempts": dest.retries + 1} for r in e.rows]
    db.enqueue(conn, rows, now)
    return {r["webhook"] for r in rows}


def _committed(riders: list) -> set[str]:
    """Tell the riders their transaction committed; returns the destinations whose deliveries
    they claimed in it (those need no wake-up)."""
    taken: set[str] = set()
    for rider in riders:
        try:
            taken |= rider.committed()
        except Exception:  # noqa: BLE001 - its claims are recovered at lease expiry
            log.exception("webhook dispatcher: taking in the deliveries it claimed failed")
    return taken


def _riders(deliveries: Deliveries, conn, names: set[str], now: datetime) -> list:
    """Let this process's dispatchers of ``deliveries`` do their writes in this transaction."""
    from .running import dispatchers_of

    riders = []
    for dispatcher in dispatchers_of(deliveries):
        rider = dispatcher.ride(conn, names, now)
        if rider is not None:
            riders.append(rider)
    return riders


class DeliveryWriter:
    """``webhook.send``'s deliveries, written in the transaction that records the runs'
    outcomes (:mod:`taskengine_core.outcome_writes`): one commit per executor step for the
    deliveries of every run that finished in it, and this engine's dispatcher rides along as it
    does in the intake's commits. Items: ``(webhook, row)``."""

    def __init__(self, deliveries: Deliveries) -> None:
        self._deliveries = weakref.ref(deliveries)  # as the intake's: the engine owns the queue

    def write(self, conn, items: list[tuple[str, dict]], now: datetime) -> Written:
        # the queue's own clock, as the intake's and the dispatcher's (not the executor's)
        now = datetime.now(timezone.utc)
        entries = [_Entry(webhook, [row]) for webhook, row in items]
        names = _enqueue(conn, entries, now)
        refused = {i: e.error for i, e in enumerate(entries) if e.error is not None}
        deliveries = self._deliveries()
        if refused or deliveries is None:  # refused: undone and written again without them
            return Written(refused)
        riders = _riders(deliveries, conn, names, now)

        def committed() -> None:
            for name in sorted(names - _committed(riders)):  # not claimed in this commit
                deliveries.queued(name)  # so the dispatcher looks now

        def rolled_back() -> None:
            for rider in riders:
                rider.rolled_back()

        return Written(committed=committed, rolled_back=rolled_back)


_writers: "weakref.WeakKeyDictionary[Deliveries, DeliveryWriter]" = weakref.WeakKeyDictionary()


def writer_for(deliveries: Deliveries) -> DeliveryWriter:
    """The one writer of ``deliveries`` (one, so that the runs of a step share its transaction)."""
    with _lock:
        writer = _writers.get(deliveries)
        if writer is None:
            writer = _writers[deliveries] = DeliveryWriter(deliveries)
        return writer


_intakes: "weakref.WeakKeyDictionary[Deliveries, _Intake]" = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def commit(database, webhook: str, rows: list[dict]) -> bool:
    """Commit ``rows`` (deliveries to ``webhook``) to ``database`` (the engine's
    :class:`~taskengine_core.deliveries.Deliveries`, or what
    :func:`~taskengine_core.deliveries.deliveries_for` takes); returns after the commit.
    Raises :class:`ActionError` when the webhook is unknown or disabled. Returns whether this
    engine's dispatcher claimed them in that transaction (then it needs no wake-up)."""
    deliveries = deliveries_for(database)
    with _lock:
        intake = _intakes.get(deliveries)
        if intake is None:
            intake = _intakes[deliveries] = _Intake(deliveries)
    return intake.submit(webhook, rows)
