"""Rows an action hands to the engine, committed in the transaction that records its run's outcome.

An action that must leave a durable record (``webhook.send`` queues a delivery) could open a
write transaction of its own and return after its commit. Then every run costs two commits: the
action's, and the executor's that records the outcome. Instead the action calls
``ctx.write_with_outcome(writer, item)`` and returns. When the executor records the outcomes of
the runs that finished since its last step, it hands each writer the items of all those runs in
that same transaction (which also claims the next runs): one commit per step, whatever the
number of runs in it.

The promise stays the same, and gets stronger: a run counts as succeeded only in the commit that
holds its rows, all or nothing. If the engine dies before that commit, the run is still
``running`` and recovery retries it, so an action using this must be idempotent (the same run
writes the same rows: ``webhook.send`` derives the delivery id from the run id).

* Only a succeeded attempt's items are written; a failed, cancelled or timed-out one's are dropped.
* A writer may refuse an item (``webhook.send`` to an unknown or disabled webhook): that item's
  run fails with the writer's error, and nothing of that run is written.
* A writer that raises fails every run with items of that step (retryable) and writes none of
  them (a savepoint); the other runs' outcomes are recorded as usual. An error of the database
  itself (locked, a deadlock, the connection lost) is raised on: the executor keeps the outcomes
  as they are and writes them, items and all, with its next step.
* ``Written.committed`` runs after the commit (a dispatcher takes in what it claimed in it);
  ``Written.rolled_back`` when the transaction or the savepoint was undone.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable, Protocol

from taskengine_core.errors import ActionError, transient
from taskengine_core.store.sql import savepoint

log = logging.getLogger("taskengine.executor")


def _nothing() -> None:
    return None


@dataclass
class Written:
    """What a writer did inside the transaction, and what to do once it ends."""

    refused: dict[int, ActionError] = field(default_factory=dict)  # index in items -> its run's error
    committed: Callable[[], None] = _nothing
    rolled_back: Callable[[], None] = _nothing


class OutcomeWriter(Protocol):
    def write(self, conn, items: list[Any], now: datetime) -> Written:
        """Write ``items`` (from several runs, in order) inside the caller's transaction ``conn``;
        a refused item must leave nothing written."""


class _Refused(Exception):
    pass


def write_with_outcomes(conn, outcomes: list, now: datetime) -> list[Written]:
    """Inside the transaction that records ``outcomes``: write the items of the succeeded ones,
    failing (in place) the runs whose items were refused or could not be written. Returns what
    was written, for :func:`after_commit` / :func:`after_rollback`."""
    while True:
        pending = [o for o in outcomes if o.writes and o.status == "succeeded"]
        if not pending:
            return []
        groups: dict[Any, list[tuple[Any, Any]]] = {}
        for outcome in pending:
            for writer, item in outcome.writes:
                groups.setdefault(writer, []).append((outcome, item))
        done: list[Written] = []
        refused: dict[int, tuple[Any, ActionError]] = {}
        try:
            with savepoint(conn, "outcome_writes"):
                for writer, pairs in groups.items():
                    written = writer.write(conn, [item for _, item in pairs], now)
                    done.append(written)
                    for index, error in written.refused.items():
                        refused[id(pairs[index][0])] = (pairs[index][0], error)
                if refused:
                    raise _Refused()
        except _Refused:  # undone; the refused runs fail and the rest are written again
            after_rollback(done)
            for outcome, error in refused.values():
                _fail(outcome, str(error), error.retryable, error.output)
            continue
        except Exception as exc:  # noqa: BLE001 - the runs fail; the other outcomes are recorded
            after_rollback(done)
            if transient(exc):  # other writers or the connection: the whole step is tried again
                raise
            log.exception("recording what %d runs' actions queued failed", len(pending))
            for outcome in pending:
                _fail(outcome, f"what the action queued could not be recorded ({type(exc).__name__}: "
                               f"{str(exc)[:200]})", True, None)
            return []
        except BaseException:  # SystemExit and the like: undone, and the writers told so
            after_rollback(done)
            raise
        return done


def after_commit(done: list[Written]) -> None:
    for written in done:
        try:
            written.committed()
        except Exception:  # noqa: BLE001 - committed already; a writer's follow-up must not stop the engine
            log.exception("a writer's follow-up after the commit failed")


def after_rollback(done: list[Written]) -> None:
    for written in done:
        try:
            written.rolled_back()
        except Exception:  # noqa: BLE001 - as above
            log.exception("a writer's follow-up after a rollback failed")


def _fail(outcome, error: str, retryable: bool, output) -> None:
    outcome.status, outcome.error, outcome.retryable, outcome.output = "failed", error, retryable, output
