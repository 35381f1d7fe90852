"""A `once:` schedule whose time has already passed when it is applied follows catch_up."""

from __future__ import annotations

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

    def make(clock):
        engine = Engine(db_path, clock=clock, manager=plugins_for_tests.manager())
        engine.executor.start()
        made.append(engine)
        return engine

    yield make
    for engine in made:
        engine.executor.stop(0)


def rules(policy: str, lateness: str = "10m") -> str:
    return f"""
        schedules:
          cutover: {{once: "2026-03-01T09:00", timezone: UTC, catch_up: {policy}, max_lateness: {lateness}}}
        tasks:
          switch: {{action: test.record, schedules: [cutover]}}
    """


SLOT = "2026-03-01T09:00:00.000000Z"


def test_past_once_with_catch_up_once_fires_once_and_says_it_was_late(applied, engines, db_path):
    text = rules("once")
    applied(text, manager=plugins_for_tests.manager())
    clock = FakeClock("2026-03-01T12:00:00+00:00")  # three hours after the once time
    engine = engines(clock)
    engine.run_until_idle()
    runs = rows(db_path, "SELECT task, status, trigger, schedule, slot FROM runs")
    assert runs == [{"task": "switch", "status": "succeeded", "trigger": "schedule",
                     "schedule": "cutover", "slot": SLOT}]
    (decision,) = rows(db_path, "SELECT decision, reason, task FROM decisions WHERE schedule = 'cutover'")
    assert decision["decision"] == "matched" and decision["task"] == "switch"
    assert decision["reason"] == ("slot due; fired late: 3h after its due time, beyond max_lateness 10m "
                                  "(catch_up: once)")
    assert rows(db_path, "SELECT status, reason FROM schedule_slots") == [
        {"status": "fired", "reason": "fired late: 3h after its due time, beyond max_lateness 10m (catch_up: once)"}]
    assert rows(db_path, "SELECT next_fire FROM schedule_state") == [{"next_fire": None}]

    # The same file again, a restart, later steps: the slot never fires a second time.
    assert applied(text, manager=plugins_for_tests.manager()).changes == []
    clock.advance(3600)
    engines(clock).run_until_idle()
    engine.run_until_idle()
    assert len(rows(db_path, "SELECT id FROM runs")) == 1
    assert len(rows(db_path, "SELECT * FROM decisions WHERE schedule = 'cutover'")) == 1


@pytest.mark.parametrize("policy, lateness, reason", [
    ("skip", "10m", "missed: 3h after its due time, beyond max_lateness 10m (catch_up: skip)"),
    ("skip", "1h", "missed: 3h after its due time, beyond max_lateness 1h (catch_up: skip)"),
])
def test_past_once_with_catch_up_skip_is_logged_missed(applied, engines, db_path, policy, lateness, reason):
    text = rules(policy, lateness)
    applied(text, manager=plugins_for_tests.manager())
    clock = FakeClock("2026-03-01T12:00:00+00:00")
    engines(clock).run_until_idle()
    assert rows(db_path, "SELECT id FROM runs") == []
    assert rows(db_path, "SELECT decision, reason, schedule, slot FROM decisions") == [
        {"decision": "missed", "reason": reason, "schedule": "cutover", "slot": SLOT}]
    assert rows(db_path, "SELECT status, reason FROM schedule_slots") == [{"status": "missed", "reason": reason}]
    applied(text, manager=plugins_for_tests.manager())
    clock.advance(60)
    engines(clock).run_until_idle()
    assert rows(db_path, "SELECT id FROM runs") == []
    assert len(rows(db_path, "SELECT * FROM decisions")) == 1


def test_past_once_within_max_lateness_is_on_time(applied, engines, db_path):
    applied(rules("skip", "4h"), manager=plugins_for_tests.manager())
    engines(FakeClock("2026-03-01T12:00:00+00:00")).run_until_idle()
    assert [r["slot"] for r in rows(db_path, "SELECT slot FROM runs")] == [SLOT]
    assert rows(db_path, "SELECT decision, reason FROM decisions") == [{"decision": "matched", "reason": "slot due"}]


def test_changing_a_fired_once_schedule_does_not_fire_its_slot_again(applied, engines, db_path):
    applied(rules("once"), manager=plugins_for_tests.manager())
    clock = FakeClock("2026-03-01T12:00:00+00:00")
    engines(clock).run_until_idle()
    applied(rules("all"), manager=plugins_for_tests.manager())  # changed definition, same slot
    clock.advance(60)
    engines(clock).run_until_idle()
    assert len(rows(db_path, "SELECT id FROM runs")) == 1


def test_a_once_schedule_in_the_future_is_unchanged(applied, engines, db_path):
    applied(rules("skip"), manager=plugins_for_tests.manager())
    clock = FakeClock("2026-03-01T08:00:00+00:00")
    engine = engines(clock)
    engine.run_until_idle()
    assert rows(db_path, "SELECT next_fire FROM schedule_state") == [{"next_fire": SLOT}]
    assert rows(db_path, "SELECT id FROM runs") == []
    clock.advance(3600)
    engine.run_until_idle()
    assert [r["slot"] for r in rows(db_path, "SELECT slot FROM runs")] == [SLOT]
