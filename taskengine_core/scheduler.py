"""The scheduler: a heap of next fire times; a due slot becomes run rows.

Each slot (schedule, due time) is claimed through a unique key in the same transaction that
inserts its runs, so a restart or a second engine on the same database never fires it twice.
Next fire times persist in ``schedule_state`` and always advance from the stored value, never
from "now", so the clock jumping back cannot re-fire a slot. After downtime, late slots follow
the schedule's ``catch_up`` policy; every missed, coalesced or skipped slot is a logged row.

Catch-up semantics (documented in docs/user-guide.md):
- a slot at most ``max_lateness`` late (default 5m) is on time and fires;
- later slots: ``skip`` logs them missed; ``once`` (the default) fires the latest one and logs the
  rest coalesced; ``all`` fires each of them (at most ``MAX_CATCH_UP`` slots, older ones missed).
"""

from __future__ import annotations

import heapq
import logging
from datetime import datetime, timedelta

from taskengine_core.clock import Clock, to_iso
from taskengine_core.durations import format_duration
from taskengine_core.evaluator import NewRun, insert_runs
from taskengine_core.model import Runtime
from taskengine_core.schedule_loading import (  # noqa: F401  (names this module always had)
    DEFAULT_CATCH_UP, DEFAULT_MAX_LATENESS, _Definition, _Schedule, apply_changes, load_all, spec_hash)
from taskengine_core.store import Store, slots as slot_store
from taskengine_core.store.decisions import insert_decisions

log = logging.getLogger("taskengine.scheduler")
MAX_CATCH_UP = 1000
BATCH = 1000  # schedules claimed per transaction


class Scheduler:
    def __init__(self, store: Store, clock: Clock | None = None) -> None:
        self.store, self.clock = store, clock or Clock()
        self._heap: list[tuple[float, str]] = []
        self._schedules: dict[str, _Schedule] = {}
        self._next: dict[str, datetime] = {}
        self.generation = -1
        self.changes_seq = 0  # the config_changes row through which the schedules were read
        self._definitions: dict[str, _Definition] = {}  # spec text -> definition, kept across loads
        self._definitions_zone: str | None = None

    # -- configuration ------------------------------------------------------------------------

    def load(self, runtime: Runtime) -> None:
        """(Re)build the heap from the schedules table and their persisted next fire times
        (see :func:`taskengine_core.schedule_loading.read_rows`)."""
        load_all(self, runtime)

    def refresh(self, runtime: Runtime) -> None:
        """Catch up with a changed configuration: only the schedules the change log names are
        read again; everything when only a full load will do (see ``apply_changes``)."""
        if not apply_changes(self, runtime):
            self.load(runtime)

    def _replace(self, name: str, schedule: _Schedule | None, upcoming: datetime | None) -> None:
        """Put one schedule's new entry in place (None: it is gone). Its old heap entry, if
        the time changed, stays in the heap but is stale: ``tick`` skips an entry whose time is
        not the schedule's current next fire time."""
        old = self._next.pop(name, None)
        if schedule is None:
            self._schedules.pop(name, None)
        else:
            self._schedules[name] = schedule
        if upcoming is not None:
            self._next[name] = upcoming
            if old is None or old.timestamp() != upcoming.timestamp():
                heapq.heappush(self._heap, (upcoming.timestamp(), name))

    def _rebuild_heap(self) -> None:
        self._heap = [(when.timestamp(), name) for name, when in self._next.items()]
        heapq.heapify(self._heap)

    def _compact_heap(self) -> None:
        """Rebuild the heap once stale entries outnumber the live ones."""
        if len(self._heap) > 2 * len(self._next) + 1000:
            self._rebuild_heap()

    def _stale(self, entry: tuple[float, str]) -> bool:
        when = self._next.get(entry[1])
        return when is None or when.timestamp() != entry[0]

    # -- running ------------------------------------------------------------------------------

    def next_due_in(self) -> float | None:
        """Seconds until the earliest slot (0 when overdue), or None with nothing scheduled."""
        heap = self._heap
        while heap and self._stale(heap[0]):  # left by a changed or deleted schedule
            heapq.heappop(heap)
        if not heap:
            return None
        return max(0.0, heap[0][0] - self.clock.now().timestamp())

    def tick(self, runtime: Runtime) -> int:
        """Fire every due slot; returns how many slots were handled. O(1) when nothing is due.

        All schedules due in one pass are claimed, and their runs inserted, in one transaction
        per ``BATCH`` schedules: many schedules due at the same instant cost one commit.
        """
        if runtime.generation != self.generation:
            self.refresh(runtime)
        heap = self._heap
        if not heap:
            return 0
        now = self.clock.now()
        now_ts = now.timestamp()
        if heap[0][0] > now_ts:
            return 0
        handled = 0
        while heap and heap[0][0] <= now_ts:
            due = []
            while heap and heap[0][0] <= now_ts and len(due) < BATCH:
                entry = heapq.heappop(heap)
                if self._stale(entry):  # the schedule changed or went since: its current entry is another
                    continue
                name = entry[1]
                schedule, first = self._schedules.get(name), self._next.pop(name, None)
                if schedule is not None and first is not None:
                    due.append((schedule, first))
            try:
                handled += self._fire(due, now, runtime)
            except BaseException:  # nothing was committed: keep the slots due for the next pass
                for schedule, first in due:
                    self._next[schedule.name] = first
                    heapq.heappush(heap, (first.timestamp(), schedule.name))
                raise
        return handled

    def _fire(self, due: list[tuple[_Schedule, datetime]], now: datetime, runtime: Runtime) -> int:
        now_text = to_iso(now)
        texts: dict[datetime, str] = {}  # schedules due together share their due times' text

        def iso(when: datetime) -> str:
            text = texts.get(when)
            if text is None:
                text = texts[when] = to_iso(when)
            return text

        work = []  # (schedule, [(due text, status, reason)], upcoming, last slot)
        # schedules of one definition due at the same instant have the same slots and plan:
        # computed once per (definition, enabled, first due) in this pass
        planned: dict[tuple, tuple] = {}
        for schedule, first_due in due:
            key = (schedule.definition, schedule.enabled, first_due)
            known = planned.get(key)
            if known is None:
                try:
                    next_after = schedule.recurrence.next_after
                except ValueError as exc:  # stored before this version refused it: never fires again
                    log.error("schedule %s cannot be compiled: %s", schedule.name, exc)
                    continue
                slots, upcoming = [first_due], next_after(first_due)
                while upcoming is not None and upcoming <= now and len(slots) < MAX_CATCH_UP + 1:
                    slots.append(upcoming)
                    upcoming = next_after(upcoming)
                while upcoming is not None and upcoming <= now:  # beyond the catch-up bound: skip ahead
                    upcoming = next_after(upcoming)
                plan = [(iso(s), status, why) for s, status, why in self._plan(schedule, slots, now)]
                known = planned[key] = (plan, upcoming, slots[-1])
            work.append((schedule, *known))
        runs, decisions = [], []
        with self.store.write() as db:
            conn = db.conn
            # Each slot is claimed by its unique key: a slot another engine (or an earlier pass)
            # claimed is not won here, and only won slots get runs.
            won = slot_store.claim(conn, [(schedule.name, slot, status, now_text, reason)
                                          for schedule, plan, _, _ in work for slot, status, reason in plan])
            states = []
            for schedule, plan, upcoming, last in work:
                for slot, status, reason in plan:
                    if (schedule.name, slot) not in won:
                        continue
                    if reason:
                        log.info("schedule %s slot %s %s: %s", schedule.name, slot, status, reason)
                    if status == "fired":
                        self._runs_for(schedule, slot, now_text, runtime, runs, decisions, reason)
                    else:
                        decisions.append((now_text, status, reason, schedule.name, slot, None, None))
                states.append((iso(upcoming) if upcoming else None, iso(last), now_text, schedule.name))
            insert_runs(conn, runs, now_text)
            insert_decisions(conn, ("time", "decision", "reason", "schedule", "slot", "task", "run_id"),
                             [(*d[:6], d[6].id if d[6] else None) for d in decisions])
            slot_store.advance(conn, states)
        for schedule, _, upcoming, _ in work:
            if upcoming is not None:
                self._next[schedule.name] = upcoming
                heapq.heappush(self._heap, (upcoming.timestamp(), schedule.name))
        return sum(len(plan) for _, plan, _, _ in work)

    def _plan(self, schedule: _Schedule, slots: list[datetime], now: datetime) -> list[tuple[datetime, str, str]]:
        grace = timedelta(seconds=schedule.max_lateness)
        on_time = [s for s in slots if now - s <= grace]
        late = [s for s in slots if now - s > grace]
        plan: list[tuple[datetime, str, str]] = []
        if late:
            policy = schedule.catch_up

            def fired_late(s: datetime) -> str:
                return (f"fired late: {format_duration((now - s).total_seconds())} after its due time, "
                        f"beyond max_lateness {format_duration(schedule.max_lateness)} (catch_up: {policy})")

            if policy == "all":
                keep = late[-MAX_CATCH_UP:]
                plan += [(s, "missed", "older than the catch-up bound") for s in late[:-MAX_CATCH_UP]]
                plan += [(s, "fired", fired_late(s)) for s in keep]
            elif policy == "once" and not on_time:
                plan += [(s, "coalesced", f"missed; coalesced into the run for {to_iso(late[-1])}")
                         for s in late[:-1]]
                plan.append((late[-1], "fired", fired_late(late[-1])))
            else:
                if policy == "skip":
                    plan += [(s, "missed", f"missed: {format_duration((now - s).total_seconds())} after its "
                              f"due time, beyond max_lateness {format_duration(schedule.max_lateness)} "
                              "(catch_up: skip)") for s in late]
                else:
                    plan += [(s, "coalesced", "coalesced into an on-time slot") for s in late]
        plan += [(s, "fired", "") for s in on_time]
        if not schedule.enabled:
            plan = [(s, "skipped" if status == "fired" else status, "schedule is disabled" if status == "fired" else why)
                    for s, status, why in plan]
        return plan

    def _runs_for(self, schedule: _Schedule, slot: str, now_text: str, runtime: Runtime,
                  runs: list, decisions: list, late: str = "") -> None:
        for task_name in schedule.tasks:
            task = runtime.tasks.get(task_name)
            if task is None:
                decision, why, run = "skipped", "task no longer exists", None
            elif not task.fires:
                why = "task is retired (delete_after_run)" if task.retired else "task is disabled"
                decision, run = "skipped", None
            else:
                decision, why = "matched", f"slot due; {late}" if late else "slot due"
                run = NewRun(task, "schedule", now_text, schedule=schedule.name, slot=slot)
                runs.append(run)
            decisions.append((now_text, decision, why, schedule.name, slot, task_name, run))

