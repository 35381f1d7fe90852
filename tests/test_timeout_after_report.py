"""A run whose action returned before its deadline is not also timed out when the step that
records it comes after the deadline (the previous write waited on another process's lock, or
failed and is retried): it used to get a second, "timeout" outcome in the same batch, which
retried a succeeded run (its action ran twice) and left its task counted as stuck for good
(no later run of a one-at-a-time task was ever claimed)."""

from __future__ import annotations

import time

from tests.backends import db_path  # noqa: F401  (every test on SQLite and on PostgreSQL)
from tests.conftest import FakeClock
from tests.test_engine import attempts, plugin_engine, runs  # noqa: F401 (fixture)


def test_a_run_reported_before_its_deadline_is_not_timed_out_by_a_late_step(plugin_engine, db_path):  # noqa: F811
    clock = FakeClock()
    engine = plugin_engine("""
        tasks:
          t: {action: test.record, with: {x: 1}, timeout: 5s, retry: {attempts: 2, backoff: 1s, jitter: false}}
        events:
          go: {on: go, tasks: [t]}
    """, workers=1, clock=clock)
    engine.emit("go")
    engine.step()  # claims the run; the worker runs it and reports at once
    deadline = time.monotonic() + 10
    while engine.executor._done.empty() and time.monotonic() < deadline:
        time.sleep(0.01)
    clock.advance(60)  # the step that records it comes after the run's deadline
    engine.executor.step(engine.runtime)
    (run,) = runs(db_path)
    assert (run["status"], run["attempt"]) == ("succeeded", 1)
    assert [a["outcome"] for a in attempts(db_path, run["id"])] == ["succeeded"]
    engine.emit("go")  # the task is not left counted as stuck: its next run is claimed and runs
    engine.run_until_idle(timeout=15)
    assert [r["status"] for r in runs(db_path)] == ["succeeded", "succeeded"]
