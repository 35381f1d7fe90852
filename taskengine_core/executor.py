"""The worker pool: claims due runs, runs them on worker threads, enforces timeouts, writes
outcomes in batches, renews leases, and on start recovers runs a dead process left running."""

from __future__ import annotations

import dataclasses
import logging
import queue
import random
import threading
import time
from datetime import timedelta

from taskengine_core.claim_pace import ClaimPace
from taskengine_core.clock import Clock, from_iso, to_iso
from taskengine_core.context import RunInfo
from taskengine_core.errors import transient
from taskengine_core.holds import hold_runs, seconds_until_resume
from taskengine_core.in_flight import InFlight
from taskengine_core.model import Runtime
from taskengine_core.outcome_writes import after_commit, after_rollback, write_with_outcomes
from taskengine_core.runs import (Claimed, Outcome, claim_due, find_orphans, lease_owner,
                                  record_outcomes, renew_leases)
from taskengine_core.store import Store, runs as run_store
from taskengine_core.store.decisions import record_decision
from taskengine_core.worker import AttemptRunner

log = logging.getLogger("taskengine.executor")
DEFAULT_WORKERS = 16
DEFAULT_LEASE = 60.0
TIMEOUT_GRACE = 2.0  # an action gets this long past its timeout to stop by itself
FINAL_WRITE_WAIT = 5.0  # at stop, how long the last write waits on another process's lock
CANCEL_WAIT = 3.0  # at stop, how long cancelled actions get to clean up (command.run: TERM, then KILL at 2 s)


class Executor:
    def __init__(self, store: Store, runner: AttemptRunner, *, clock: Clock | None = None,
                 workers: int = DEFAULT_WORKERS, lease: float = DEFAULT_LEASE, hook=None,
                 wake: threading.Event | None = None, rng: random.Random | None = None) -> None:
        self.store, self.runner, self.clock = store, runner, clock or Clock()
        self.workers, self.lease, self.hook = workers, lease, hook
        self.owner = lease_owner()
        self.wake = wake or threading.Event()
        self.rng = rng or random.Random()
        self._work: queue.SimpleQueue = queue.SimpleQueue()
        self._done: queue.SimpleQueue = queue.SimpleQueue()
        self._unwritten: list[Outcome] = []  # outcomes whose write failed: tried again with the next write
        self._inflight: dict[str, InFlight] = {}
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._accepting = True
        self._next_lease_renewal = 0.0
        self._next_cancel_check = 0.0
        self._next_recovery = self.clock.monotonic() + self.lease / 2  # start() already recovered
        self._stuck: dict[str, int] = {}  # task -> timed-out actions whose threads still run
        self._settings: dict = {}
        self._runtime: Runtime | None = None
        self.pace = ClaimPace()  # how far to claim ahead of the free workers

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        for _ in range(self.workers):
            self._spawn_worker()

    def recover(self, runtime: Runtime) -> list[str]:
        """Mark runs left ``running`` by a dead process ``interrupted``; an idempotent action's
        run is retried, any other is flagged for attention. Returns the recovered run ids.
        Called at start and then every half lease, so another engine's crash is noticed too."""
        now = self.clock.now()
        with self.store.write() as db:
            outcomes = []
            for run_id, task_name, attempt, max_attempts, owner, _, started, depth, trigger in find_orphans(
                    db.conn, now, self.owner, self.lease):
                task = runtime.tasks.get(task_name)
                if task is None:
                    run_store.interrupt(db.conn, run_id, to_iso(now), "interrupted; the task no longer exists")
                    continue
                run = Claimed(run_id, task, trigger, None, None, None, None, None, attempt, max_attempts, depth,
                              started_at=from_iso(started) if started else None)
                outcome = self._interrupted(run, now, f"interrupted: the engine running it ({owner}) stopped; ",
                                            "the action is idempotent, so it is retried",
                                            "the action is not idempotent, so it is not re-run: check it and "
                                            "run the task by hand")
                outcomes.append(outcome)
                record_decision(db.conn, to_iso(now), "interrupted", outcome.error, task=task_name, run_id=run_id)
            record_outcomes(db.conn, outcomes, now, self.rng, self.runner.secrets.redactor.scrub,
                            runtime.listens)
        return [o.run.id for o in outcomes]

    def stop(self, grace: float) -> None:
        """Stop claiming; give in-flight runs ``grace`` seconds, then mark the rest interrupted."""
        self._accepting = False
        deadline = self.clock.monotonic() + grace
        self._release_waiting(within=max(0.1, grace))
        while self._active() and self.clock.monotonic() < deadline:
            self.wake.wait(0.05)
            self.wake.clear()
            self._write_at_stop(self._drain(), within=deadline - self.clock.monotonic())
        now = self.clock.now()
        with self._lock:  # workers report under this lock, so nothing slips in between
            finished = self._drain()
            reported = {o.run.id for o in finished}
            cut_off = [e for e in self._inflight.values() if not e.abandoned and e.run.id not in reported]
            leftover = []
            for entry in cut_off:
                entry.cancel()
                entry.abandoned = "stop"
                entry.returned = threading.Event()
                leftover.append(self._interrupted(entry.run, now, "interrupted: the engine stopped before the "
                                                  "run finished; ", "retried (idempotent action)",
                                                  "not re-run (not idempotent)"))
        if not self._write_at_stop(finished + leftover, within=FINAL_WRITE_WAIT):
            log.error("could not record %d runs before stopping; the next start finds them by their "
                      "lease and marks them interrupted", len(self._unwritten))
        for _ in self._threads:
            self._work.put(None)
        self._wait_for_cancelled(cut_off)

    def _release_waiting(self, within: float) -> None:
        """At stop: runs claimed ahead that no worker has taken yet go back to pending, for the
        next start or another engine (their action never started)."""
        with self._lock:
            waiting = [e for e in self._inflight.values() if not e.abandoned and not e.started]
            for entry in waiting:
                entry.abandoned = "released"
                entry.returned = threading.Event()
        if not waiting:
            return
        conn = self.store.conn
        run_store.limit_lock_wait(conn, within)
        try:
            with self.store.write() as db:
                run_store.release(db.conn, [e.run.id for e in waiting], self.owner)
        except Exception:  # noqa: BLE001 - the next start finds them by their lease
            log.exception("could not put %d claimed runs back to pending while stopping; the next start "
                          "recovers them", len(waiting))
        finally:
            run_store.limit_lock_wait(conn, None)
        with self._lock:
            for entry in waiting:
                self._inflight.pop(entry.run.id, None)

    def _write_at_stop(self, outcomes: list[Outcome], within: float) -> bool:
        """Write without waiting on another process's lock for longer than ``within`` seconds
        (not the usual busy timeout of 30): stopping must not outlast its grace by much."""
        if not outcomes:
            return True
        conn = self.store.conn
        run_store.limit_lock_wait(conn, max(0.1, within))
        try:
            self._write(outcomes)
            return True
        except Exception:  # noqa: BLE001 - kept in _unwritten; stopping goes on
            log.exception("recording finished runs failed while stopping")
            return False
        finally:
            run_store.limit_lock_wait(conn, None)

    @staticmethod
    def _wait_for_cancelled(entries: list[InFlight]) -> None:
        """Give actions told to stop a moment to do so, so that a command's children are not left
        running after the engine exits. An action that ignores the flag is left behind."""
        deadline = time.monotonic() + CANCEL_WAIT
        for entry in entries:
            if not entry.returned.wait(max(0.0, deadline - time.monotonic())):
                log.warning("run %s: the action did not stop within %gs of being cancelled; leaving it",
                            entry.run.id, CANCEL_WAIT)

    def _interrupted(self, run: Claimed, now, why: str, if_idempotent: str, otherwise: str) -> Outcome:
        item = self.runner.registry.actions.get(run.task.action)
        idempotent = bool(item and item.idempotent)
        if idempotent:  # one more attempt, even with the default retry of one attempt
            run.max_attempts = max(run.max_attempts, run.attempt + 1)
        return Outcome(run, "interrupted", run.started_at or now, now,
                       error=why + (if_idempotent if idempotent else otherwise), retryable=idempotent,
                       plugin=item.plugin.distribution if item else None,
                       plugin_version=item.plugin.version if item else None)

    # -- one step of the engine loop -----------------------------------------------------------

    def step(self, runtime: Runtime, *, only: str | None = None) -> int:
        """Write finished attempts, time out overdue ones, claim and dispatch due runs (or just
        the run ``only``). Returns how many runs were finished or started."""
        self._settings = runtime.settings
        self._runtime = runtime
        outcomes = self._drain() + self._timeouts()
        self.pace.learn(outcomes)
        ahead = 0 if only is not None else self.pace.ahead(self.workers)
        # the runs these outcomes finish leave their workers in this same transaction: claim for
        # them too (else every batch of outcomes took one commit and its claim another)
        free = self.workers + ahead - self._active(finishing=outcomes) if self._accepting else 0
        claimed = self._write(outcomes, runtime=runtime, free=free, only=only)
        entries = [InFlight(run) for run in claimed]
        with self._lock:
            for entry in entries:
                self._inflight[entry.run.id] = entry
        for entry in entries:
            self._work.put(entry)
        self._housekeeping()
        return len(outcomes) + len(claimed)

    def next_due_in(self) -> float | None:
        next_due = run_store.next_due(self.store.conn)
        if next_due is None:
            return None
        due = max(0.0, (from_iso(next_due) - self.clock.now()).total_seconds())
        held = seconds_until_resume(self.store.conn, self.clock.now())  # paused: None or until when
        return None if held is None else max(due, held)

    def idle(self) -> bool:
        return not self._active() and self._done.empty()

    # -- internals -----------------------------------------------------------------------------

    def _active(self, finishing: list[Outcome] = ()) -> int:
        """Runs this executor has started or queued (timed-out ones not counted), less those
        whose ``finishing`` outcomes are about to be written."""
        with self._lock:
            active = sum(1 for e in self._inflight.values() if not e.abandoned)
            for o in finishing:
                entry = self._inflight.get(o.run.id)
                if entry is not None and not entry.abandoned:
                    active -= 1
            return active

    def _drain(self) -> list[Outcome]:
        """Outcomes to write: those a failed write left over, then what the workers reported."""
        out, self._unwritten = self._unwritten, []
        while True:
            try:
                out.append(self._done.get_nowait())
            except queue.Empty:
                return out

    def _timeouts(self) -> list[Outcome]:
        now_mono, out = self.clock.monotonic(), []
        with self._lock:
            for entry in self._inflight.values():
                if entry.abandoned or entry.reported or entry.deadline is None or now_mono < entry.deadline:
                    continue
                entry.cancel()
                entry.abandoned = "timeout"
                entry.returned = threading.Event()
                # until its thread returns, the action still runs: its task counts as busy
                self._stuck[entry.run.task.name] = self._stuck.get(entry.run.task.name, 0) + 1
                entry.replaced = sum(self._stuck.values()) <= self.workers
                now = self.clock.now()
                out.append(Outcome(entry.run, "timeout", entry.run.started_at or now, now,
                                   error=f"timed out after {entry.run.task.timeout:g}s; the action was "
                                         "told to stop", retryable=True))
                if entry.replaced:
                    self._spawn_worker()  # the stuck thread may never return; keep the pool full
                else:
                    log.warning("%d timed-out actions are still running; not adding more workers",
                                sum(self._stuck.values()))
        return out

    def _write(self, outcomes: list[Outcome], *, runtime: Runtime | None = None, free: int = 0,
               only: str | None = None) -> list[Claimed]:
        """Record outcomes and claim up to ``free`` due runs, in one transaction."""
        claiming = runtime is not None and free > 0
        if not outcomes and not (claiming and self._anything_due(only)):
            return []  # nothing to record or claim: no write transaction
        now = self.clock.now()
        claimed: list[Claimed] = []
        to_cancel: list = []
        ended: list[Outcome] = []
        written = []
        with self._lock:
            stuck = dict(self._stuck)
        try:
            with self.store.write() as db:
                if outcomes:
                    listens = self._runtime.listens if self._runtime else (lambda _type: True)
                    written = write_with_outcomes(db.conn, outcomes, now)  # the actions' rows
                    ended = record_outcomes(db.conn, outcomes, now, self.rng,
                                            self.runner.secrets.redactor.scrub, listens)
                # paused, or in a blackout window: runs wait (taskengine_core.holds); a run by hand
                # in the foreground (only=) is not held
                if claiming and (only is not None or not hold_runs(db.conn, runtime, now)):
                    claimed, to_cancel = claim_due(db.conn, runtime, now, self.owner, self.lease, free,
                                                   only=only, extra_busy=stuck)
        except BaseException as exc:
            after_rollback(written)
            self._unwritten = _kept_after_failure(outcomes, exc) + self._unwritten  # written next time
            raise
        after_commit(written)
        with self._lock:
            for o in outcomes:
                self._inflight.pop(o.run.id, None)
            for run_id, _ in to_cancel:
                if run_id in self._inflight:
                    self._inflight[run_id].cancel()
        self._notify_finished(ended)
        return claimed

    def _anything_due(self, only: str | None) -> bool:
        return run_store.anything_due(self.store.conn, to_iso(self.clock.now()), only)

    def _notify_finished(self, outcomes: list[Outcome]) -> None:
        if self.hook is None:
            return
        heard = getattr(self.hook, "heard", None)  # the engine's hooks say when nobody listens
        heard = heard() if heard is not None else None
        for o in outcomes:
            if heard is not None and not heard(o.run.task.name):
                continue
            try:
                self.hook.run_finished(run=RunInfo(o.run.id, o.run.task.name, o.final_status, o.error,
                                                   o.duration, o.output))
            except Exception:  # noqa: BLE001 - a lifecycle hook must not break the engine
                log.exception("run_finished hook failed for run %s", o.run.id)

    def _housekeeping(self) -> None:
        now_mono = self.clock.monotonic()
        if now_mono >= self._next_lease_renewal and self._active():
            self._next_lease_renewal = now_mono + self.lease / 3
            with self.store.write() as db:
                renew_leases(db.conn, self.owner, self.clock.now() + timedelta(seconds=self.lease))
        if now_mono >= self._next_recovery and self._runtime is not None:
            self._next_recovery = now_mono + self.lease / 2
            self.recover(self._runtime)
        if now_mono >= self._next_cancel_check and self._active():
            self._next_cancel_check = now_mono + 0.5
            ids = run_store.cancel_requested(self.store.conn, self.owner)
            with self._lock:
                for run_id in ids:
                    if run_id in self._inflight:
                        self._inflight[run_id].cancel()

    def _spawn_worker(self) -> None:
        thread = threading.Thread(target=self._worker, name="taskengine-worker", daemon=True)
        thread.start()
        self._threads.append(thread)

    def _worker(self) -> None:
        while True:
            entry = self._work.get()
            if entry is None:
                return
            with self._lock:
                if entry.abandoned:  # released at stop before it started: nothing ran
                    entry.returned.set()
                    continue
                entry.started = True
                cancelled = entry.cancel_event()
                if entry.run.task.timeout is not None:  # the timeout counts from the action's start
                    entry.deadline = self.clock.monotonic() + entry.run.task.timeout + TIMEOUT_GRACE
            outcome = self.runner.run(entry.run, self._settings, cancelled)
            with self._lock:  # decide and report under one lock: a timeout cannot slip in between
                if not entry.abandoned:
                    entry.reported = True
                    self._done.put(outcome)
                    self.wake.set()
                    continue
                if entry.abandoned == "timeout":
                    task = entry.run.task.name
                    self._stuck[task] -= 1
                    if not self._stuck[task]:
                        del self._stuck[task]
            log.warning("run %s finished after it %s (%s); the result is discarded", entry.run.id,
                        "timed out" if entry.abandoned == "timeout" else "was marked interrupted at stop",
                        outcome.status)
            entry.returned.set()
            if entry.replaced:
                return  # a replacement worker already took this thread's place


def _kept_after_failure(outcomes: list[Outcome], exc: BaseException) -> list[Outcome]:
    """What to try again after a failed write. Another process holding the lock passes: keep
    the outcomes as they are. Anything else may be the outcomes themselves, and retrying them
    as they are would block every later write: keep each once more without its output, error
    and traceback, saying why; drop (and log) one that fails even so."""
    if not isinstance(exc, Exception) or transient(exc):
        return outcomes
    kept = []
    for o in outcomes:
        if o.stripped:
            log.error("run %s: its outcome (%s) cannot be recorded (%s); the run stays 'running' "
                      "until the next start recovers it", o.run.id, o.status, exc)
            continue
        kept.append(dataclasses.replace(o, output=None, traceback=None, stripped=True,
                                        error=f"the outcome could not be recorded ({type(exc).__name__}: "
                                              f"{str(exc)[:200]}); was: {o.status}"))
    return kept
