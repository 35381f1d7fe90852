"""Schedules fire linked tasks through the run path: exactly once per slot, with catch-up."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from datetime import timedelta

import pytest

from taskengine_core.engine import Engine
from tests import plugins_for_tests
from tests import backends
from tests.backends import db_path  # noqa: F401  (every test on SQLite and on PostgreSQL)
from tests.conftest import FakeClock


def rows(db_path, sql, *params):
    return backends.rows(db_path, sql, params)


@pytest.fixture
def engines(db_path):
    made = []

    def make(clock, manager=None):
        engine = Engine(db_path, clock=clock, manager=manager or plugins_for_tests.manager())
        engine.executor.start()
        made.append(engine)
        return engine

    yield make
    for engine in made:
        engine.executor.stop(0)


SATURDAY = """
    settings: {timezone: America/Chicago}
    schedules:
      saturday-evening: {every: week, days: [sat], at: "17:00"}
    tasks:
      download-updates: {action: test.record, with: {what: updates}, schedules: [saturday-evening]}
      report: {action: test.record, with: {what: report}, schedules: [saturday-evening]}
"""


def test_every_saturday_at_17_fires_each_linked_task_once(applied, engines, db_path):
    applied(SATURDAY, manager=plugins_for_tests.manager())
    clock = FakeClock("2026-11-26T12:00:00+00:00")  # a Thursday
    engine = engines(clock)
    engine.run_until_idle()
    assert rows(db_path, "SELECT next_fire FROM schedule_state") == [{"next_fire": "2026-11-28T23:00:00.000000Z"}]
    clock.advance(2 * 86400 + 11 * 3600 - 1)  # one second before 17:00 Chicago on Saturday
    engine.run_until_idle()
    assert rows(db_path, "SELECT * FROM runs") == []
    clock.advance(1)
    engine.run_until_idle()
    runs = rows(db_path, "SELECT task, status, trigger, schedule, slot FROM runs ORDER BY task")
    assert runs == [
        {"task": "download-updates", "status": "succeeded", "trigger": "schedule",
         "schedule": "saturday-evening", "slot": "2026-11-28T23:00:00.000000Z"},
        {"task": "report", "status": "succeeded", "trigger": "schedule",
         "schedule": "saturday-evening", "slot": "2026-11-28T23:00:00.000000Z"},
    ]
    assert rows(db_path, "SELECT next_fire FROM schedule_state") == [{"next_fire": "2026-12-05T23:00:00.000000Z"}]


@pytest.mark.parametrize("policy, fired, logged", [
    ("skip", [], ["missed", "missed", "missed"]),
    ("once", ["2026-03-04T09:00:00.000000Z"], ["coalesced", "coalesced"]),
    ("all", ["2026-03-02T09:00:00.000000Z", "2026-03-03T09:00:00.000000Z", "2026-03-04T09:00:00.000000Z"], []),
])
def test_restart_across_due_times_follows_the_catch_up_policy(applied, engines, db_path, policy, fired, logged):
    applied(f"""
        schedules:
          daily: {{every: day, at: "09:00", timezone: UTC, catch_up: {policy}, max_lateness: 10m}}
        tasks:
          t: {{action: test.record, schedules: [daily]}}
    """, manager=plugins_for_tests.manager())
    clock = FakeClock("2026-03-01T12:00:00+00:00")
    engines(clock).run_until_idle()  # persists next_fire = 2026-03-02 09:00; then the engine is down
    clock.advance(3 * 86400)  # 2026-03-04 12:00: three slots were missed
    engines(clock).run_until_idle()
    assert [r["slot"] for r in rows(db_path, "SELECT slot FROM runs ORDER BY slot")] == fired
    decisions = rows(db_path, "SELECT decision, reason FROM decisions WHERE decision != 'matched' ORDER BY slot")
    assert [d["decision"] for d in decisions] == logged
    slots = rows(db_path, "SELECT status FROM schedule_slots ORDER BY due")
    assert len(slots) == 3
    assert rows(db_path, "SELECT next_fire FROM schedule_state") == [{"next_fire": "2026-03-05T09:00:00.000000Z"}]


def test_an_on_time_slot_fires_even_when_a_little_late(applied, engines, db_path):
    applied("""
        schedules:
          daily: {every: day, at: "09:00", timezone: UTC, catch_up: skip, max_lateness: 10m}
        tasks:
          t: {action: test.record, schedules: [daily]}
    """, manager=plugins_for_tests.manager())
    clock = FakeClock("2026-03-01T12:00:00+00:00")
    engine = engines(clock)
    engine.run_until_idle()
    clock.advance(21 * 3600 + 5 * 60)  # 09:05 the next day: five minutes late, within 10m
    engine.run_until_idle()
    assert [r["status"] for r in rows(db_path, "SELECT status FROM runs")] == ["succeeded"]


def test_the_clock_jumping_back_never_refires_a_slot(applied, engines, db_path):
    applied("""
        schedules:
          hourly: {every: hour, timezone: UTC}
        tasks:
          t: {action: test.record, schedules: [hourly]}
    """, manager=plugins_for_tests.manager())
    clock = FakeClock("2026-03-01T12:30:00+00:00")
    engine = engines(clock)
    engine.run_until_idle()
    clock.advance(3600)
    engine.run_until_idle()
    assert len(rows(db_path, "SELECT id FROM runs")) == 1
    clock.advance(-2 * 3600)  # the wall clock is set back two hours
    engine.run_until_idle()
    second = engines(clock)  # and a restart in that state
    second.run_until_idle()
    assert len(rows(db_path, "SELECT id FROM runs")) == 1


def test_disabled_schedule_and_task_skip_and_log(applied, engines, db_path, run_cli):
    applied(SATURDAY, manager=plugins_for_tests.manager())
    run_cli("tasks", "disable", "report")
    clock = FakeClock("2026-11-28T22:59:00+00:00")
    engine = engines(clock)
    engine.run_until_idle()
    clock.advance(60)
    engine.run_until_idle()
    assert [r["task"] for r in rows(db_path, "SELECT task FROM runs")] == ["download-updates"]
    (skip,) = rows(db_path, "SELECT * FROM decisions WHERE decision = 'skipped'")
    assert (skip["task"], skip["reason"], skip["schedule"]) == ("report", "task is disabled", "saturday-evening")
    assert run_cli("schedules", "disable", "saturday-evening").stderr == "schedule saturday-evening disabled\n"
    clock.advance(7 * 86400)
    engine.run_until_idle()
    assert len(rows(db_path, "SELECT id FROM runs")) == 1
    slot = rows(db_path, "SELECT status, reason FROM schedule_slots ORDER BY due DESC LIMIT 1")[0]
    assert slot == {"status": "skipped", "reason": "schedule is disabled"}


def test_once_then_delete_task_after_run(applied, engines, db_path, run_cli):
    rules = """
        schedules:
          contract-end: {once: "2026-12-31T18:00", timezone: Europe/Berlin}
        tasks:
          tenant-off: {action: test.record, with: {tenant: acme}, schedules: [contract-end], delete_after_run: true}
    """
    applied(rules, manager=plugins_for_tests.manager())
    clock = FakeClock("2026-12-31T16:59:00+00:00")
    engine = engines(clock)
    engine.run_until_idle()
    clock.advance(60)
    engine.run_until_idle()
    assert [r["status"] for r in rows(db_path, "SELECT status FROM runs")] == ["succeeded"]
    assert rows(db_path, "SELECT retired_at FROM tasks")[0]["retired_at"] is not None
    audit = rows(db_path, "SELECT action, kind, name FROM audit WHERE action = 'retired'")
    assert audit == [{"action": "retired", "kind": "task", "name": "tenant-off"}]
    assert rows(db_path, "SELECT next_fire FROM schedule_state") == [{"next_fire": None}]
    result = applied(rules, manager=plugins_for_tests.manager())  # the same file again
    assert result.changes == []
    assert rows(db_path, "SELECT retired_at FROM tasks")[0]["retired_at"] is not None
    listed = json.loads(run_cli("tasks", "list", "--json").stdout)
    assert listed[0]["state"] == "retired"


TWO_ENGINES = textwrap.dedent("""
    import sys
    from datetime import datetime, timezone
    sys.path.insert(0, {root!r})
    from tests.conftest import FakeClock
    from tests import plugins_for_tests
    from taskengine_core.model import load_runtime
    from taskengine_core.scheduler import Scheduler
    from taskengine_core.store import open_store
    store = open_store({db!r})
    clock = FakeClock("2026-03-01T12:00:00+00:00")
    scheduler = Scheduler(store, clock)
    runtime = load_runtime(store)
    scheduler.load(runtime)
    for _ in range(30):
        clock.advance(60)
        scheduler.tick(runtime)
""")


def test_two_engine_processes_fire_each_slot_exactly_once(applied, db_path):
    schedules = "\n".join(f"  s{i}: {{every: minute, timezone: UTC, catch_up: all}}" for i in range(50))
    links = ", ".join(f"s{i}" for i in range(50))
    applied(f"schedules:\n{schedules}\ntasks:\n  t: {{action: test.record, schedules: [{links}], concurrency: parallel}}\n",
            manager=plugins_for_tests.manager())
    from pathlib import Path

    root = str(Path(__file__).parent.parent)
    # both processes start from the same persisted state
    from taskengine_core.model import load_runtime
    from taskengine_core.scheduler import Scheduler
    from taskengine_core.store import open_store

    Scheduler(open_store(db_path), FakeClock("2026-03-01T12:00:00+00:00")).load(load_runtime(open_store(db_path)))
    script = TWO_ENGINES.format(root=root, db=str(db_path))
    procs = [subprocess.Popen([sys.executable, "-c", script]) for _ in range(2)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    runs = rows(db_path, "SELECT schedule, slot, count(*) AS n FROM runs GROUP BY schedule, slot")
    assert len(runs) == 50 * 30 and {r["n"] for r in runs} == {1}
    assert rows(db_path, "SELECT count(*) AS n FROM schedule_slots")[0]["n"] == 50 * 30
