"""From events to runs: match each inbox event against the rules, and in one transaction mark
it processed and insert its runs (a delay makes a run not due before a later time)."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from datetime import timedelta

from taskengine_core.clock import Clock, from_iso, to_iso
from taskengine_core.conditions import get_path
from taskengine_core.events import INTERNAL_SOURCE
from taskengine_core.ids import new_id, new_ids
from taskengine_core.model import RulePayload, Runtime, TaskConfig
from taskengine_core.store import inbox, runs as run_store, throttles
from taskengine_core.store.decisions import insert_decisions

MAX_CHAIN_DEPTH = 10
MAX_BATCH_BYTES = 16 * 1024 * 1024  # event data read in one evaluation pass


@dataclass
class NewRun:
    """A run about to be inserted, and the decision row that explains it."""

    task: TaskConfig
    trigger: str
    not_before: str
    event_id: str | None = None
    rule: str | None = None
    schedule: str | None = None
    slot: str | None = None
    params: dict | None = None
    depth: int = 0
    id: str = ""

    def row(self, now: str) -> tuple:
        self.id = self.id or new_id()
        return (self.id, self.task.name, "pending", self.trigger, self.event_id, self.rule,
                self.schedule, self.slot, json.dumps(self.params) if self.params else None,
                self.not_before, now, self.task.retry.attempts, self.depth)


def insert_runs(conn, runs: list[NewRun], now: str) -> None:
    """Insert runs (inside the caller's transaction)."""
    for run, run_id in zip((r for r in runs if not r.id), new_ids(sum(1 for r in runs if not r.id))):
        run.id = run_id
    run_store.insert(conn, [r.row(now) for r in runs])


class Evaluator:
    """Turns pending inbox events into runs, a batch per transaction."""

    def __init__(self, clock: Clock | None = None) -> None:
        self.clock = clock or Clock()

    def process_pending(self, store, runtime: Runtime, limit: int = 1000) -> int:
        """Evaluate up to ``limit`` unprocessed events; returns how many were processed."""
        if not inbox.waiting(store.conn):
            return 0  # nothing waits: no write transaction
        with store.write() as db:
            conn = db.conn
            # claimed by seq (PostgreSQL: locked, another engine's batch is skipped), and exactly
            # these are marked processed: never "every seq up to the last", which with several
            # writers could mark an event committed late without evaluating it
            waiting, listened = _take(inbox.claim_waiting(conn, limit), runtime)
            if not waiting:
                return 0
            now_dt = self.clock.now()
            now = to_iso(now_dt)
            batch = _Batch(conn, now_dt)
            matched = []
            for event in inbox.read_events(conn, listened):
                del event["seq"]  # the rest is the event as rules and templates see it
                matched.append((event, runtime.rules.match(event)))
            batch.load_throttles({batch.throttle_slot(rule.payload, event) for event, rules in matched
                                  for rule in rules if rule.payload.enabled and rule.payload.throttle_window})
            for event, rules in matched:
                self._evaluate(event, rules, runtime, batch)
            insert_runs(conn, batch.runs, now)
            insert_decisions(conn, ("time", "decision", "reason", "event_id", "rule", "task", "run_id"),
                             [(now, d, reason, e, rule, task, run.id if run else None)
                              for d, reason, e, rule, task, run in batch.decisions])
            inbox.mark_processed(conn, [seq for seq, _, _ in waiting], now)
            batch.save_throttles()
            return len(waiting)

    def _evaluate(self, event: dict, rules: list, runtime: Runtime, batch: "_Batch") -> None:
        depth = 0
        if event["source"] == INTERNAL_SOURCE:
            depth = event["data"].get("depth", 0)
            depth = (depth if isinstance(depth, int) else MAX_CHAIN_DEPTH) + 1
        for rule in rules:
            payload: RulePayload = rule.payload
            if not payload.enabled:
                batch.decide("skipped", "event rule is disabled", event, payload.name)
                continue
            throttle = batch.throttle_slot(payload, event) if payload.throttle_window else None
            if throttle and batch.throttled(throttle):
                batch.decide("throttled", f"already fired within {payload.throttle_window:g}s "
                             f"for this key", event, payload.name)
                continue
            if depth > MAX_CHAIN_DEPTH:
                batch.decide("skipped", f"chain of task events deeper than {MAX_CHAIN_DEPTH}: "
                             "stopped to prevent a loop", event, payload.name)
                continue
            fired = self._fire(event, payload, runtime, batch, depth)
            if throttle and fired:  # the window starts when the rule fires, not when nothing ran
                batch.start_throttle(throttle, payload.throttle_window)

    @staticmethod
    def _fire(event: dict, payload: RulePayload, runtime: Runtime, batch: "_Batch", depth: int) -> bool:
        """Queue the rule's runs (or say why a task is skipped); whether any run was queued."""
        fired = False
        not_before = _due(event["time"], payload.delay)
        for task_name in payload.tasks:
            task = runtime.tasks.get(task_name)
            if task is None:
                batch.decide("skipped", "task no longer exists", event, payload.name, task_name)
            elif not task.fires:
                why = "task is retired (delete_after_run)" if task.retired else "task is disabled"
                batch.decide("skipped", why, event, payload.name, task_name)
            else:
                run = NewRun(task, "event", not_before, event_id=event["id"],
                             rule=payload.name, depth=depth)
                batch.runs.append(run)
                reason = "matched" if not payload.delay else f"matched; due {not_before}"
                batch.decide("matched", reason, event, payload.name, task_name, run)
                fired = True
        return fired


def _take(waiting: list[list], runtime: Runtime) -> tuple[list[list], list[int]]:
    """This pass's events, and the seqs of those some rule listens for (only they are read
    whole: nothing to parse or match in the rest). The pass stops before the listened data adds
    up to more than MAX_BATCH_BYTES (it takes one event at least): a backlog of large events is
    read a slice at a time, never as one value larger than SQLite or memory allows."""
    listened, total = [], 0
    for n, (seq, event_type, size) in enumerate(waiting):
        if runtime.listens(event_type):
            total += size
            if total > MAX_BATCH_BYTES and n:
                return waiting[:n], listened
            listened.append(seq)
    return waiting, listened


@functools.lru_cache(maxsize=256)  # a batch's events mostly share a time (emitted together)
def _due(event_time: str, delay: float) -> str:
    try:
        return to_iso(from_iso(event_time) + timedelta(seconds=delay))
    except OverflowError:  # an event dated near year 9999 plus a delay
        return "9999-12-31T23:59:59.999999Z"


class _Batch:
    """Runs, decisions and throttle windows gathered while evaluating one batch of events."""

    def __init__(self, conn, now) -> None:
        self.conn, self.now = conn, now
        self.runs: list[NewRun] = []
        self.decisions: list[tuple] = []
        self._throttles: dict[tuple[str, str], str] = {}
        self._changed: set[tuple[str, str]] = set()

    def decide(self, decision, reason, event, rule=None, task=None, run=None) -> None:
        self.decisions.append((decision, reason, event["id"], rule, task, run))

    def throttle_slot(self, payload: RulePayload, event: dict) -> tuple[str, str]:
        """The rule's throttle window for this event (the values at the rule's ``key`` paths)."""
        values = [get_path(event, path) for path in payload.throttle_key]
        return payload.name, json.dumps([v if found else None for found, v in values], default=str)

    def load_throttles(self, slots: set[tuple[str, str]]) -> None:
        """Read the windows this batch may test, in one query; on PostgreSQL each is locked
        until the batch commits, so another engine's batch waits for this one's windows."""
        if slots:
            found = throttles.lock_and_read(self.conn, sorted(slots))
            self._throttles.update({slot: found.get(slot, "") for slot in slots})

    def throttled(self, slot: tuple[str, str]) -> bool:
        if slot not in self._throttles:
            self._throttles[slot] = throttles.until(self.conn, *slot) or ""
        return self._throttles[slot] > to_iso(self.now)

    def start_throttle(self, slot: tuple[str, str], window: float) -> None:
        self._throttles[slot] = to_iso(self.now + timedelta(seconds=window))
        self._changed.add(slot)

    def save_throttles(self) -> None:
        throttles.save(self.conn, [(rule, key, self._throttles[(rule, key)]) for rule, key in self._changed])
