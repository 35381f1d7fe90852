"""Runs without an event (by hand, from a schedule): templates over ``event`` take defaults, and
every task shipped in the quickstart ``rules/`` runs by hand past rendering into its action."""

from __future__ import annotations

import json
import os
import shutil
from datetime import datetime, timezone
from pathlib import Path

import pytest

from taskengine_core.errors import TemplateError
from taskengine_core.template_event import AbsentEvent
from taskengine_core.templating import TemplateRenderer
from tests.backends import db_path, one, rows  # noqa: F401  (on SQLite and on PostgreSQL)
from tests.conftest import FakeClock


def _first_attempt(target, run_id: str) -> dict:
    """Run a queued run (``tasks run --no-wait``) once in an engine; its first attempt's row. A
    task with retries is not waited on past its first attempt."""
    from taskengine_core.engine import Engine

    engine = Engine(target, wake_listener=False)
    engine.executor.start()
    try:
        deadline = datetime.now(timezone.utc).timestamp() + 60
        while not rows(target, "SELECT 1 FROM attempts WHERE run_id = ?", (run_id,)):
            assert datetime.now(timezone.utc).timestamp() < deadline, "the run never started"
            engine.step()
    finally:
        engine.executor.stop(5)
    return rows(target, "SELECT * FROM attempts WHERE run_id = ? ORDER BY number", (run_id,))[0]

SHIPPED_RULES = Path(__file__).resolve().parent.parent / "rules"
BY_HAND = "it was run by hand"


def render(text: str):
    return TemplateRenderer().render_value(text, {"event": AbsentEvent(BY_HAND), "now": "N"},
                                           path="with.text")


@pytest.mark.parametrize("text, expected", [
    ("hello {{ event.data.name | default('world') }}", "hello world"),
    ("{{ event.data['name'] | default(3) }}", 3),
    ("{{ event.time | default(now) }}", "N"),
    ("{% if event %}{{ event.data.x }}{% else %}no event{% endif %}", "no event"),
    ("{{ event is defined }}", False),
])
def test_templates_over_a_missing_event_take_defaults(text, expected):
    assert render(text) == expected


@pytest.mark.parametrize("text, expression", [
    ("{{ event.id }}", "event.id"),
    ("{{ event.data }}", "event.data"),
    ("x {{ event.data.user.name }}", "event.data.user.name"),
    ("{{ event.data['user'] }}", "event.data['user']"),
])
def test_a_missing_event_without_a_default_names_the_expression(text, expression):
    with pytest.raises(TemplateError) as caught:
        render(text)
    assert str(caught.value) == (
        f"template at with.text: '{expression}' is undefined: this run has no event (it was run by "
        f"hand); give a default, e.g. {{{{ {expression} | default('...') }}}}, or test {{% if event %}}")


def test_say_hello_runs_by_hand(run_cli, db_path):  # db_path: TASKENGINE_DB on each backend
    """The walkthrough's task used to fail by hand with "'event' is none"."""
    assert run_cli("apply", SHIPPED_RULES / "hello.yaml").exit_code == 0
    result = run_cli("tasks", "run", "say-hello", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["output"]["stdout"] == "hello world (event none: run by hand)\n"
    emitted = run_cli("emit", "demo.hello", "name=alice").stdout.strip()  # an event still fills it in
    from taskengine_core.engine import Engine

    engine = Engine(os.environ["TASKENGINE_DB"])
    engine.executor.start()
    try:
        engine.run_until_idle()
    finally:
        engine.executor.stop(0)
    listed = json.loads(run_cli("logs", "list", "--task", "say-hello", "--json").stdout)
    shown = json.loads(run_cli("logs", "show", listed[0]["id"], "--json").stdout)
    assert shown["output"]["stdout"] == f"hello alice (event {emitted})\n"


def test_a_scheduled_run_without_a_default_fails_at_once_naming_the_schedule(applied, db_path):
    from taskengine_core.engine import Engine

    applied("""
        schedules:
          hourly: {cron: "0 * * * *"}
        tasks:
          t: {action: command.run, with: {argv: [echo, "{{ event.data.x }}"]}, schedules: [hourly],
              retry: {attempts: 3, backoff: 1}}
    """)
    clock = FakeClock("2026-03-01T12:59:30+00:00")
    engine = Engine(db_path, clock=clock)
    engine.executor.start()
    try:
        engine.run_until_idle()
        clock.advance(60)
        engine.run_until_idle()
    finally:
        engine.executor.stop(0)
    (status, error, attempt, attention), = [tuple(r.values()) for r in rows(
        db_path, "SELECT status, error, attempt, attention FROM runs")]
    assert (status, attempt, attention) == ("failed", 1, 1)  # a configuration error: no retry
    assert error == ("task 't': template at argv[1]: 'event.data.x' is undefined: this run has no event "
                     "(it was fired by schedule 'hourly'); give a default, e.g. "
                     "{{ event.data.x | default('...') }}, or test {% if event %}")


# -- every shipped task, by hand -----------------------------------------------------------------

@pytest.fixture
def shipped(tmp_path, run_cli, monkeypatch, db_path):
    """The quickstart rules applied as shipped. PATH holds only ``echo`` and ``df``: whatever a
    task would start beyond those is not found, so nothing outside the test changes."""
    rules = tmp_path / "shipped-rules"
    shutil.copytree(SHIPPED_RULES, rules)
    applied = run_cli("apply", rules)
    assert applied.exit_code == 0, applied.stderr
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for program in ("echo", "df"):
        (bin_dir / program).symlink_to(shutil.which(program))
    monkeypatch.setenv("PATH", str(bin_dir))


def test_every_shipped_task_runs_by_hand_past_rendering(shipped, run_cli, db_path):
    tasks = {t["name"]: t for t in json.loads(run_cli("tasks", "list", "--json").stdout)}
    assert "say-hello" in tasks and len(tasks) >= 3
    for name, task in sorted(tasks.items()):
        if (task["spec"].get("retry") or {}).get("attempts", 1) > 1:
            queued = run_cli("tasks", "run", name, "--no-wait")
            assert queued.exit_code == 0, queued.stderr
            attempt = _first_attempt(db_path, queued.stdout.strip())
            status, error, output = attempt["outcome"], attempt["error"], json.loads(attempt["output"] or "null")
        else:
            result = run_cli("tasks", "run", name, "--json")
            run = json.loads(result.stdout)
            assert result.exit_code == (0 if run["status"] == "succeeded" else 1)
            status, error, output = run["status"], run["error"], run["output"]
        # past rendering: whatever happened, it happened in the action, not in a template
        assert "template" not in (error or ""), (name, error)
        argv = task["spec"]["with"].get("argv") or []
        if task["action"] == "command.run" and argv and argv[0] not in ("echo", "df"):
            assert (status, error) == ("failed", f"command not found: {argv[0]!r}"), name
        else:  # the quickstart's echo, df and webhook (queued for the engine's own ingress)
            assert status == "succeeded", (name, error)
        if name == "say-hello":
            assert output["stdout"] == "hello world (event none: run by hand)\n"
        if name == "monthly-disk-report":
            assert output["exit_code"] == 0
    bodies = [json.loads(r["body"]) for r in rows(db_path, "SELECT body FROM webhook_deliveries")]
    assert {"type": "demo.echoed", "data": {"name": "world", "echo_of": "none: run by hand"}} in bodies


def test_a_manual_run_for_a_stored_event(applied, run_cli, db_path):
    applied("""
        tasks:
          greet: {action: command.run, with: {argv: [echo, "hello {{ event.data.user }}"]}, enabled: false}
    """)
    event_id = run_cli("emit", "user.login", "user=alice").stdout.strip()
    result = run_cli("tasks", "run", "greet", "--event", event_id, "--json")
    assert result.exit_code == 0, result.stderr
    run = json.loads(result.stdout)
    assert run["output"]["stdout"] == "hello alice\n" and run["event"]["id"] == event_id
    explained = json.loads(run_cli("logs", "explain", event_id, "--json").stdout)
    assert [(d["decision"], d["run_id"]) for d in explained["decisions"]] == [("manual", run["id"])]
    before = one(db_path, "SELECT count(*) FROM runs")
    missing = run_cli("tasks", "run", "greet", "--event", "nope")
    assert missing.exit_code == 1
    assert missing.stderr == "Error: no event with id 'nope'; see 'taskengine logs list' or 'taskengine emit'\n"
    assert one(db_path, "SELECT count(*) FROM runs") == before
