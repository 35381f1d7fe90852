"""Holding runs back: `taskengine pause` / `resume` (events accepted and evaluated, runs wait,
audited, in /healthz and logs) and blackout windows in `settings.blackouts` (deferred to the
window's end or skipped, each a logged decision)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
import requests

from taskengine_core.errors import RuleFileError
from taskengine_core.testing import Harness
from tests.backends import db_path, rows  # noqa: F401  (every test on SQLite and on PostgreSQL)
from tests.conftest import FakeClock

RULES = """
tasks:
  greet: {action: command.run, with: {argv: [echo, "hi {{ event.data.user }}"]}}
events:
  login: {on: user.login, tasks: [greet]}
"""


def test_paused_events_are_evaluated_and_runs_wait_until_resume(run_cli, db_path, tmp_path):
    harness = Harness(db_path)
    try:
        harness.apply(RULES)
        paused = run_cli("pause", "--reason", "storage maintenance")
        assert paused.exit_code == 0
        assert paused.stdout.startswith("paused: runs wait until 'taskengine resume' (storage maintenance)")
        event_id = harness.emit("user.login", user="alice")
        harness.run_until_idle()
        [run] = harness.runs()
        assert (run["status"], run["event_id"]) == ("pending", event_id)  # evaluated, waiting
        listed = run_cli("logs", "list")
        assert "runs held by" in listed.stderr and "storage maintenance" in listed.stderr
        assert run_cli("resume").stdout.startswith("resumed (paused since ")
        harness.run_until_idle()
        assert harness.run(run["id"])["status"] == "succeeded"
    finally:
        harness.close()
    audit = json.loads(run_cli("audit", "--json").stdout)
    assert [a["action"] for a in audit[:2]] == ["resumed", "paused"]
    assert audit[1]["changes"]["pause"]["to"]["reason"] == "storage maintenance"
    decisions = [d for d in harness_decisions(db_path) if d[0] in ("paused", "resumed")]
    assert [d[0] for d in decisions] == ["paused", "resumed"]


def harness_decisions(db_path):
    return [(r["decision"], r["reason"]) for r in rows(db_path, "SELECT decision, reason FROM decisions ORDER BY id")]


def test_a_pause_with_until_ends_by_itself(db_path):
    from taskengine_core import holds

    clock = FakeClock()
    harness = Harness(db_path, clock=clock)
    try:
        harness.apply(RULES)
        with harness.engine.store.write() as db:
            holds.pause(db.conn, clock.now(), until=clock.now() + timedelta(hours=1), reason="",
                        actor="ops", source="test")
        harness.emit("user.login", user="bob")
        harness.run_until_idle()
        assert [r["status"] for r in harness.runs()] == ["pending"]
        clock.advance(3601)
        harness.run_until_idle()
        assert [r["status"] for r in harness.runs()] == ["succeeded"]
    finally:
        harness.close()
    [(_, reason)] = [d for d in harness_decisions(db_path) if d[0] == "resumed"]
    assert reason.startswith("the pause ended at 2026-03-01T13:00:00")


def test_a_run_by_hand_in_the_foreground_is_not_held(run_cli, write_rules, db_path):  # db_path: TASKENGINE_DB
    run_cli("apply", write_rules(RULES))
    run_cli("pause")
    result = run_cli("tasks", "run", "greet", "--param", 'argv=["echo", "by hand"]')
    assert result.exit_code == 0, result.stderr
    assert "succeeded" in result.stderr


def test_healthz_shows_the_pause(db_path, run_cli):
    from taskengine_core.engine import Engine

    engine = Engine(db_path)
    engine.start(listen="127.0.0.1:0")
    try:
        url = f"http://{engine.ingress.address}/healthz"
        assert "paused" not in requests.get(url, timeout=10).json()
        run_cli("pause", "--until", "2h", "--reason", "upgrade")
        body = requests.get(url, timeout=10).json()
        assert body["status"] == "ok" and body["paused"]["reason"] == "upgrade" and body["paused"]["until"]
        accepted = requests.post(f"http://{engine.ingress.address}/events", json={"type": "a"}, timeout=10)
        assert accepted.status_code == 202  # events are still accepted
    finally:
        engine.stop(grace=1)


@pytest.mark.parametrize("until, message", [
    ("2020-01-01T00:00:00Z", "has passed"),
    ("tomorrow", "give a duration (2h, 30m) or a date-time with a zone offset"),
    ("2027-01-01T10:00", "give a duration"),
])
def test_pause_until_must_be_a_future_time_or_a_duration(run_cli, until, message, db_path):  # db_path: TASKENGINE_DB
    result = run_cli("pause", "--until", until)
    assert result.exit_code == 2 and message in result.stderr


# -- blackout windows ----------------------------------------------------------------------------

BLACKOUT_RULES = """
settings:
  timezone: Europe/Berlin
  blackouts:
    - name: weekend-freeze
      schedule: {{every: week, days: [fri], at: "16:00"}}
      duration: 64h
      tags: [deploy]
      policy: {policy}
tasks:
  deploy-app: {{action: command.run, with: {{argv: [echo, deploy]}}, tags: [deploy]}}
  rotate-logs: {{action: command.run, with: {{argv: [echo, rotate]}}}}
events:
  push: {{on: git.push, tasks: [deploy-app, rotate-logs]}}
"""
FRIDAY_5PM_BERLIN = "2026-03-06T16:00:00+00:00"  # 17:00 in Berlin (CET)


def test_a_run_inside_a_blackout_window_is_deferred_to_its_end(db_path):
    clock = FakeClock(FRIDAY_5PM_BERLIN)
    harness = Harness(db_path, clock=clock)
    try:
        harness.apply(BLACKOUT_RULES.format(policy="defer"))
        harness.emit("git.push")
        harness.run_until_idle()
        runs = {r["task"]: r for r in harness.runs()}
        assert runs["rotate-logs"]["status"] == "succeeded"  # not in scope
        deploy = runs["deploy-app"]
        assert deploy["status"] == "pending" and deploy["not_before"] == "2026-03-09T07:00:00.000000Z"
        [decision] = [d for d in deploy["decisions"] if d["decision"] == "deferred"]
        assert decision["reason"] == "blackout window 'weekend-freeze': deferred to 2026-03-09T07:00:00.000000Z"
        clock._now = datetime(2026, 3, 9, 7, 0, 1, tzinfo=timezone.utc)  # Monday 08:00:01 Berlin
        harness.run_until_idle()
        assert harness.run(deploy["id"])["status"] == "succeeded"
    finally:
        harness.close()


def test_policy_skip_skips_and_says_why(db_path):
    harness = Harness(db_path, clock=FakeClock(FRIDAY_5PM_BERLIN))
    try:
        harness.apply(BLACKOUT_RULES.format(policy="skip"))
        [deploy] = [r for r in harness.emit_and_run("git.push") if r["task"] == "deploy-app"]
        assert deploy["status"] == "skipped"
        assert deploy["error"] == "blackout window 'weekend-freeze' until 2026-03-09T07:00:00.000000Z (policy: skip)"
        assert [d["decision"] for d in deploy["decisions"]] == ["matched", "skipped"]
    finally:
        harness.close()


def test_outside_the_window_nothing_is_held(db_path):
    harness = Harness(db_path, clock=FakeClock("2026-03-04T10:00:00+00:00"))  # a Wednesday
    try:
        harness.apply(BLACKOUT_RULES.format(policy="skip"))
        assert {r["status"] for r in harness.emit_and_run("git.push")} == {"succeeded"}
    finally:
        harness.close()


def test_a_window_without_tasks_or_tags_holds_everything():
    from taskengine_core.holds import active_windows
    from taskengine_core.model import TaskConfig

    now = datetime(2026, 12, 24, 12, 0, tzinfo=timezone.utc)
    [window] = active_windows([{"name": "xmas", "schedule": {"once": "2026-12-24T00:00"}, "duration": "3d"}], now)
    assert window.holds(TaskConfig("any", "command.run", {}))
    assert window.ends == datetime(2026, 12, 27, 0, 0, tzinfo=timezone.utc)
    assert active_windows([{"name": "xmas", "schedule": {"once": "2026-12-24T00:00"}, "duration": "3d"}],
                          now + timedelta(days=3)) == []


def test_bad_blackouts_fail_validation_with_their_path(tmp_path):
    harness = Harness(tmp_path / "te.db")
    with pytest.raises(RuleFileError) as caught:
        harness.apply("""
            settings:
              blackouts:
                - {name: a, schedule: {cron: "99 * * * *"}, duration: 1h}
                - {name: b, schedule: {cron: "0 1 * * *"}, duration: forever}
                - {name: c, schedule: {cron: "0 1 * * *"}, duration: 1h, policy: later}
        """)
    shown = "\n".join(str(p) for p in caught.value.problems)
    assert "settings.blackouts[0].schedule.cron" in shown
    assert "settings.blackouts[1].duration  expected a duration" in shown
    assert "settings.blackouts[2].policy" in shown and "'later'" in shown


def test_a_blackout_naming_an_unknown_task_fails_validation(tmp_path):
    harness = Harness(tmp_path / "te.db")
    with pytest.raises(RuleFileError) as caught:
        harness.apply("""
            settings:
              blackouts: [{name: a, schedule: {cron: "0 1 * * *"}, duration: 1h, tasks: [deploy-ap]}]
            tasks:
              deploy-app: {action: command.run, with: {argv: [deploy]}}
        """)
    [problem] = caught.value.problems
    assert str(problem).endswith("settings.blackouts[0].tasks[0]  blackout window refers to task 'deploy-ap', "
                                 "which is not defined; did you mean 'deploy-app'?")
