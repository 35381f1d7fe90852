"""Task logs: what ran, how each attempt went, and why an event did or did not fire."""

from __future__ import annotations

import json
from datetime import timedelta

from taskengine_core.clock import Clock, to_iso
from taskengine_core.errors import NotFoundError
from taskengine_core.events import DEDUP_WINDOW_SECONDS, row_to_event
from taskengine_core.store import Store, logs, retention


def list_runs(store: Store, *, task: str | None = None, status: str | None = None,
              since_seconds: float | None = None, limit: int = 50, clock: Clock | None = None) -> list[dict]:
    since = None
    if since_seconds is not None:
        since = to_iso((clock or Clock()).now() - timedelta(seconds=since_seconds))
    return logs.list_runs(store.conn, task=task, status=status, since=since, limit=limit)


def show_run(store: Store, run_id: str) -> dict:
    conn = store.conn
    run = logs.run(conn, run_id)
    if run is None:
        raise NotFoundError(f"no run with id {run_id!r}; see 'taskengine logs list'")
    run["output"] = json.loads(run["output"]) if run["output"] else None
    run["params"] = json.loads(run["params"]) if run["params"] else None
    run["attempts"] = []
    for a in logs.attempts(conn, run_id):
        a["output"] = json.loads(a["output"]) if a["output"] else None
        run["attempts"].append(a)
    run["decisions"] = logs.run_decisions(conn, run_id)
    if run["event_id"]:
        event = logs.event_row(conn, run["event_id"])
        run["event"] = row_to_event(event) if event else None
    return run


def explain_event(store: Store, event_id: str) -> dict:
    """What happened to an event: the recorded decisions, and every current rule's verdict."""
    from taskengine_core.model import rules_for_explaining
    from taskengine_core.rule_index import explain_rules

    row = logs.event_outcome(store.conn, event_id)
    if row is None:
        raise NotFoundError(f"no event with id {event_id!r}; see 'taskengine emit' or the HTTP ingress")
    event = row_to_event(row[:6])
    decisions = logs.event_decisions(store.conn, event_id)
    current, tasks = rules_for_explaining(store, event.get("type"))
    rules = []
    for rule, matched, reason in explain_rules(current, event):
        payload = rule.payload
        verdict = reason
        if matched and not payload.enabled:
            verdict = "matches, but the event rule is disabled"
        elif matched:
            states = []
            for task in payload.tasks:
                tc = tasks.get(task)
                states.append(f"{task}: " + ("missing" if tc is None else "retired" if tc.retired
                                             else "enabled" if tc.enabled else "disabled"))
            verdict = "matched" + (f" (tasks {', '.join(states)})" if states else " (no tasks linked)")
        rules.append({"rule": rule.name, "matched": matched, "reason": verdict})
    return {"event": event, "processed_at": row[6], "duplicate_of": row[7],
            "decisions": decisions, "rules_now": rules}


PRUNE_BATCH = 500  # rows in the first prune transaction; then sized to take about PRUNE_TARGET
PRUNE_TARGET = 0.005  # seconds one prune transaction may hold the write lock
PRUNE_BATCH_RANGE = (20, 1000)
PRUNE_PAUSE = 0.005  # seconds between two batches, so that other writers (the ingress) get in


class Pruner:
    """Retention in bounded batches: each :meth:`step` is one short write transaction that
    deletes at most ``batch`` rows through an index (finished runs with their attempts and
    decisions, then decisions left without a run, processed events no run refers to, ended
    throttle windows, old schedule slots and the configuration change log). Between steps the
    write lock is free, so an ingress never waits for a whole prune."""

    PHASES = ("runs", "decisions", "events", "throttles", "slots", "config_changes")

    def __init__(self, store: Store, older_than_seconds: float, *, clock: Clock | None = None,
                 batch: int | None = None) -> None:
        now = (clock or Clock()).now()
        self.store, self.batch = store, batch or PRUNE_BATCH
        self._adapt = batch is None  # a batch given by the caller stays as it is
        self.cutoff = to_iso(now - timedelta(seconds=older_than_seconds))
        # events stay at least as long as the (source, id) dedup window needs them
        self.event_cutoff = min(self.cutoff, to_iso(now - timedelta(seconds=DEDUP_WINDOW_SECONDS)))
        self.removed = {"runs": 0, "events": 0, "decisions": 0}
        self._phase = 0
        self._cursor: tuple[str, int] = ("", 0)  # (time, rowid) scanned up to, for decisions and events

    @property
    def done(self) -> bool:
        return self._phase >= len(self.PHASES)

    def step(self) -> bool:
        """Delete one batch; returns whether more work remains. The batch grows or shrinks so
        that a transaction takes about ``PRUNE_TARGET`` on this machine."""
        import time

        if self.done:
            return False
        with self.store.write() as db:
            started = time.monotonic()
            more = getattr(self, f"_{self.PHASES[self._phase]}")(db.conn)
            took = time.monotonic() - started
        if self._adapt and more:
            low, high = PRUNE_BATCH_RANGE
            if took > PRUNE_TARGET:
                self.batch = max(low, self.batch // 2)
            elif took < PRUNE_TARGET / 2:
                self.batch = min(high, self.batch * 2)
        if not more:
            self._phase += 1
            self._cursor = ("", 0)
        return not self.done

    def _runs(self, conn) -> bool:
        ids = retention.delete_finished_runs(conn, self.cutoff, self.batch)
        self.removed["runs"] += len(ids)
        return len(ids) == self.batch

    def _scanned(self, rows: list[tuple]) -> list:
        """The deletable ones of ``(time, key, deletable)`` rows; moves the cursor past them all."""
        if rows:
            self._cursor = (rows[-1][0], rows[-1][1])
        return [r[1] for r in rows if r[2]]

    def _decisions(self, conn) -> bool:
        """Decisions older than the cut-off whose run is gone, or that never had one."""
        rows = retention.decisions_before(conn, self.cutoff, self._cursor, self.batch)
        gone = self._scanned(rows)
        retention.delete_decisions(conn, gone)
        self.removed["decisions"] += len(gone)
        return len(rows) == self.batch

    def _events(self, conn) -> bool:
        """Processed events past the cut-off that no remaining run refers to."""
        rows = retention.events_before(conn, self.event_cutoff, self._cursor, self.batch)
        gone = self._scanned(rows)
        retention.delete_events(conn, gone)
        self.removed["events"] += len(gone)
        return len(rows) == self.batch

    def _throttles(self, conn) -> bool:
        return retention.delete_ended_throttles(conn, self.cutoff, self.batch) == self.batch

    def _slots(self, conn) -> bool:
        return retention.delete_old_slots(conn, self.cutoff, self.batch) == self.batch

    def _config_changes(self, conn) -> bool:
        from taskengine_core.model import prune_config_changes

        return prune_config_changes(conn, self.batch)


def prune(store: Store, older_than_seconds: float, *, clock: Clock | None = None,
          batch: int | None = None, pause: float = PRUNE_PAUSE) -> dict[str, int]:
    """Delete finished runs (with attempts and decisions) and processed events older than the
    cut-off, in short transactions (see :class:`Pruner`). Unfinished runs, and events that still
    have unfinished runs, are never deleted."""
    import time

    pruner = Pruner(store, older_than_seconds, clock=clock, batch=batch)
    while pruner.step():
        time.sleep(pause)
    return pruner.removed
