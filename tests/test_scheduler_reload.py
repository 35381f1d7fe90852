"""Scheduler.load compiles only new or changed schedules; unchanged ones keep their next fire time."""

from __future__ import annotations

from taskengine_core import recurrence
from taskengine_core.model import load_runtime
from taskengine_core.scheduler import Scheduler
from taskengine_core.store import open_store
from tests import plugins_for_tests
from tests.backends import db_path  # noqa: F401  (on SQLite and on PostgreSQL)
from tests.conftest import FakeClock

RULES = """
    schedules:
      a: {{every: day, at: "09:00", timezone: UTC}}
      b: {{every: day, at: "{b}", timezone: UTC}}
      c: {{every: day, at: "11:00", timezone: UTC, start: 2026-01-01}}
    tasks:
      t: {{action: test.record, schedules: [a, b, c]}}
"""


def test_reload_compiles_only_the_changed_schedule_and_still_fires_the_others(applied, db_path, monkeypatch):
    compiled = []
    real = recurrence.compile_schedule

    def counting(spec, zone="UTC"):
        compiled.append(spec.get("at"))
        return real(spec, zone)

    monkeypatch.setattr(recurrence, "compile_schedule", counting)
    manager = plugins_for_tests.manager()
    applied(RULES.format(b="10:00"), manager=manager)
    store = open_store(db_path)
    clock = FakeClock("2026-03-01T12:00:00+00:00")
    scheduler = Scheduler(store, clock)
    scheduler.load(load_runtime(store))
    assert sorted(compiled) == ["09:00", "10:00", "11:00"]
    applied(RULES.format(b="10:30"), manager=manager)
    compiled.clear()
    scheduler.load(load_runtime(store))  # the running engine picks the change up
    assert compiled == ["10:30"]
    fresh = Scheduler(store, clock)  # an engine starting: nothing compiled before a slot is due
    compiled.clear()
    fresh.load(load_runtime(store))
    assert compiled == []
    clock.advance(22 * 3600)  # 10:00 next day: a (09:00) is due
    assert fresh.tick(load_runtime(store)) == 1
    assert compiled == ["09:00"]
    nexts = dict(store.conn.execute("SELECT schedule, next_fire FROM schedule_state").fetchall())
    assert nexts == {"a": "2026-03-03T09:00:00.000000Z", "b": "2026-03-02T10:30:00.000000Z",
                     "c": "2026-03-02T11:00:00.000000Z"}
    store.close()
