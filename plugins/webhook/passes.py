"""What the webhook dispatcher does with the database: its passes on the dispatcher's database
thread (recover, look for due work, record finished attempts, claim, prune) and its rides in the
intake's transaction (:meth:`DatabasePasses.ride`). The state they share with the loop thread is
the dispatcher's (:class:`~.dispatcher.Dispatcher`), under its ``_handoff`` and ``_db_lock``."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

from taskengine_core import runs as core_runs
from taskengine_core.clock import from_iso
from taskengine_core.store import deliveries as queue_store

from . import store as db
from .config import WebhookSettings
from .sender import after_commit, emit_final

log = logging.getLogger("taskengine.webhook")
PRUNE_EVERY = 3600.0
PRUNE_PAUSE = 0.005  # between two batches of a retention prune
PRUNE_RETRY = 60.0  # a retention prune that failed is tried again after this long
HOLD = 4  # claimed messages a destination may hold, in units of its concurrency


@dataclass
class _Pass:
    decided: list = field(default_factory=list)
    claimed: list = field(default_factory=list)
    dests: dict | None = None  # set when the destinations were reloaded
    more: set = field(default_factory=set)  # destinations that may have more due right now
    wait: float = 1.0
    settings: WebhookSettings | None = None  # set when settings changed


class DatabasePasses:
    """The dispatcher's database side (a base of :class:`~.dispatcher.Dispatcher`)."""

    # -- the database thread ---------------------------------------------------------------

    def _recover(self) -> None:
        now = datetime.now(timezone.utc)
        with self._deliveries.write() as conn:
            n = db.recover(conn, now, self._is_gone)
        if n:
            log.warning("webhook deliveries: %d left 'sending' by a stopped engine are queued again", n)

    def _is_gone(self, owner: str | None) -> bool:
        """Whether a lease owner (``host:pid:start``) is a process known to be dead."""
        if owner == self.owner:
            return False
        state = getattr(core_runs, "owner_state", None)  # owner_is_dead in older cores
        return state(owner) == "dead" if state else core_runs.owner_is_dead(owner)

    def _reload(self, conn, out: _Pass) -> None:
        gen = db.generation(conn)
        if gen != self._generation:
            self._generation, self._dests = gen, db.destinations(conn)
            out.dests = dict(self._dests)
            conf = db.settings(conn)
            if conf != self._conf:
                self._conf = out.settings = conf

    def _pass(self, *args) -> _Pass:
        with self._db_lock:
            return self._pass_locked(*args)

    def _pass_locked(self, results, released, hints, scan, claiming) -> _Pass:
        """Look for work in a read transaction; then, if there is any, one write transaction:
        record finished attempts, give back released messages, claim due ones. A destination
        holds up to ``HOLD * concurrency`` claimed messages (those in flight and the rest queued,
        so a worker that finishes starts the next at once, and rides can claim what runs queue
        while every worker is busy with a slow receiver)."""
        now = datetime.now(timezone.utc)
        out, orphans, stale, gone_names = _Pass(wait=self.poll), [], False, set()
        with self._deliveries.read() as conn:
            self._reload(conn, out)
            if scan:
                expired, dead = db.stale_owners(conn, now, self._is_gone)
                stale = expired or bool(dead)
                pending = db.pending_webhooks(conn)  # one lookup per destination that has any
                gone_names = pending - set(self._dests)
                hints = hints | db.due_webhooks(
                    conn, now, [n for n in pending if n in self._dests and self._dests[n].enabled])
            upcoming = db.next_due(conn, now)
            # a ride may have claimed them already: a write only for what is still due
            wanted = sorted(db.due_webhooks(conn, now, hints)) if claiming and hints else []
        # what each destination holds, as the loop last counted it and rides since added (a
        # count taken before a ride would have this pass claim up to the limit again)
        held = self._held_now() if wanted else {}
        if results or released or stale or gone_names or wanted:
            with self._deliveries.write() as conn:
                self._write_results(conn, results, released, now, out)
                if stale:
                    db.recover(conn, now, self._is_gone)
                if gone_names:
                    orphans = db.fail_orphans(conn, now, gone_names)
                self._claim(conn, wanted, held, now, out)
                upcoming = db.next_due(conn, now)
        if scan:
            self._prune_step(now)
        if upcoming is not None:
            out.wait = min(self.poll, (from_iso(upcoming) - now).total_seconds())
        if self._pruning:
            out.wait = min(out.wait, PRUNE_PAUSE)  # the next batch soon, other writers in between
        after_commit(self.info, out.decided)
        for data in orphans:
            emit_final(self.info, "failed", {**data, "status": "failed", "status_code": None}, 0)
        return out

    def _write_results(self, conn, results, released, now, out: _Pass) -> None:
        """Record finished attempts and give back released ids (reloading destinations first,
        and again after a 410 disabled one)."""
        self._reload(conn, out)
        if results:
            out.decided = db.record(conn, results, self._dests, self._conf, now, self.owner, self.rng)
            if any(a.gone for a in results):
                self._reload(conn, out)
        db.release(conn, released, self.owner)

    def _held_now(self) -> dict[str, int]:
        """What each destination holds (the loop's count, and what rides claimed since)."""
        with self._handoff:
            return dict(self._held)

    def _claim(self, conn, names, held, now, out: _Pass) -> None:
        limit = HOLD * self._conf.concurrency
        for name in names:
            dest = self._dests.get(name)
            if dest is None or not dest.enabled:
                continue
            free = limit - held.get(name, 0)
            if free < max(1, self._conf.concurrency // 4) and held.get(name, 0):
                out.more.add(name)  # enough queued; top up when more has gone out
                continue
            # leased for as long as the last of them may wait behind requests that run to their
            # timeout, and its own: a lease that expired in the queue had it claimed and sent again
            claimed = db.claim(conn, name, free, now, self.owner, HOLD * dest.timeout)
            out.claimed += claimed
            if len(claimed) == free:
                out.more.add(name)

    def _prune_step(self, now) -> None:
        """The retention prune's next batch, if one is due. Its failure (the delete refused, the
        database locked past its timeout) is not the pass's: the pass has committed its claims and
        recorded its results, which a failed pass would drop (left 'sending' until their lease
        expired, their events never emitted), and the pass retried would be a scan, pruning again."""
        try:
            self._maybe_prune(now)
        except Exception as exc:  # noqa: BLE001 - rolled back; tried again later
            self._pruning = False
            self._next_prune = time.monotonic() + PRUNE_RETRY
            log.warning("retention: pruning finished webhook deliveries failed (%s: %s); trying "
                        "again in %gs", type(exc).__name__, exc, PRUNE_RETRY)

    def _maybe_prune(self, now) -> None:
        """Retention of finished deliveries: a batch per pass, each its own short transaction."""
        if not self._pruning:
            if time.monotonic() < self._next_prune:
                return
            self._next_prune = time.monotonic() + PRUNE_EVERY
            self._pruning, self._pruned = True, 0
        with self._deliveries.write() as conn:
            removed = db.prune(conn, now)
        self._pruned += removed
        if removed < db.PRUNE_BATCH:
            self._pruning = False
            if self._pruned:
                log.info("retention: pruned %d finished webhook deliveries", self._pruned)

    def _final(self, results, released) -> None:
        now = datetime.now(timezone.utc)
        with self._db_lock, self._deliveries.write() as conn:
            decided = db.record(conn, results, self._dests, self._conf, now, self.owner, self.rng)
            db.release(conn, released, self.owner)
        after_commit(self.info, decided)

    # -- riding in the transaction that queues deliveries (its thread) ----------------------

    def ride(self, conn, names: set[str], now: datetime) -> "_Ride | None":
        """Inside a write transaction ``conn`` (the executor's step, or the intake's) that has
        just queued deliveries to ``names``: record the finished attempts, give back released
        ids and claim those deliveries (a savepoint: a failure here never costs the runs their
        commit). Returns
        what to do once the transaction commits or rolls back; ``None`` when it did nothing
        (the dispatcher is busy with a pass of its own, or stopping)."""
        if self._stopping or self._loop is None or not self._db_lock.acquire(blocking=False):
            return None
        try:
            with self._handoff:
                if self._closing:
                    return None
                results, self._results = self._results, []
                released, self._released = self._released, []
                self._unwritten_since = None
            held = self._held_now()
            out = _Pass(wait=self.poll)
            try:
                with queue_store.savepoint(conn, "webhook_ride"):
                    self._write_results(conn, results, released, now, out)
                    self._claim(conn, sorted(names), held, now, out)
            except Exception:  # noqa: BLE001 - the dispatcher's own pass does it instead
                log.exception("webhook dispatcher: writing in the intake's transaction failed")
                self._generation = None  # what _reload saw was rolled back: read again
                self._give_back(results, released)
                return None
            with self._handoff:
                for message in out.claimed:
                    self._riding[message.webhook] = self._riding.get(message.webhook, 0) + 1
                    self._held[message.webhook] = self._held.get(message.webhook, 0) + 1
            complete = {n for n in names if n not in out.more
                        and (dest := self._dests.get(n)) is not None and dest.enabled}
            return _Ride(self, out, results, released, complete)
        finally:
            self._db_lock.release()


@dataclass
class _Ride:
    dispatcher: "DatabasePasses"
    out: _Pass
    results: list
    released: list
    complete: set[str]  # destinations with nothing left due after the claim

    def committed(self) -> set[str]:
        """Hand the claims to the loop; returns the destinations whose due deliveries were all
        claimed (their senders need not wake the dispatcher)."""
        d, out = self.dispatcher, self.out
        after_commit(d.info, out.decided)
        try:
            d._loop.call_soon_threadsafe(d._adopt, out)
        except RuntimeError:  # the loop is gone: give the claims back now
            with d._handoff:
                for message in out.claimed:
                    d._riding[message.webhook] -= 1
            if out.claimed:
                with d._deliveries.write() as conn:
                    db.release(conn, [m.id for m in out.claimed], d.owner)
            return set()
        return self.complete

    def rolled_back(self) -> None:
        d = self.dispatcher
        d._generation = None
        with d._handoff:
            for message in self.out.claimed:
                d._riding[message.webhook] -= 1
        d._give_back(self.results, self.released)
        d.wake()
