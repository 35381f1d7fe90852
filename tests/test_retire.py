"""``delete_after_run``: a one-shot task is retired only after a successful run. A run that
fails for good leaves the task active and the run flagged for attention, with a decision saying
what to do; a later successful run (by hand) retires it."""

from __future__ import annotations

import json

import pytest

from taskengine_core.engine import Engine
from tests import backends
from tests.backends import db_path  # noqa: F401  (every test on SQLite and on PostgreSQL)
from tests.conftest import FakeClock

RULES = """
    schedules:
      contract-end: {{once: "2026-12-31T18:00", timezone: Europe/Berlin}}
    tasks:
      tenant-off:
        action: command.run
        with: {{argv: [sh, -c, '{script}', sh, "{ready}"]}}
        schedules: [contract-end]
        retry: {{attempts: 3, backoff: 10}}
        delete_after_run: true
"""


def rows(db_path, sql: str) -> list[dict]:
    return backends.rows(db_path, sql)


@pytest.fixture
def fire(applied, db_path):
    """Apply the one-shot task with ``script`` (``$1`` is a path), reach its date and let every
    retry run; returns the path the script is given."""
    engines = []

    def run(script: str, ready) -> None:
        applied(RULES.format(script=script, ready=ready))
        clock = FakeClock("2026-12-31T16:59:00+00:00")
        engine = Engine(db_path, clock=clock)
        engine.executor.start()
        engines.append(engine)
        engine.run_until_idle()
        clock.advance(60)
        for _ in range(4):  # the first attempt, then each retry after its backoff
            engine.run_until_idle()
            clock.advance(60)

    yield run
    for engine in engines:
        engine.executor.stop(0)


def test_a_failed_one_shot_run_keeps_the_task_and_flags_the_run(fire, db_path, run_cli, tmp_path):
    ready = tmp_path / "ready"
    fire('test -e "$1" || { echo "tenant still on" >&2; exit 3; }', ready)

    (run,) = rows(db_path, "SELECT id, status, attempt, attention, error FROM runs")
    assert (run["status"], run["attempt"], run["attention"]) == ("failed", 3, 1)  # every retry was made
    assert run["error"] == "command exited with code 3"
    assert rows(db_path, "SELECT retired_at FROM tasks") == [{"retired_at": None}]
    assert rows(db_path, "SELECT * FROM audit WHERE action = 'retired'") == []
    (decision,) = rows(db_path, f"SELECT decision, reason FROM decisions WHERE run_id = '{run['id']}' "
                                "AND decision = 'attention'")
    assert decision["reason"] == (
        "delete_after_run: the task is not retired because this run failed; fix the cause and run it "
        "by hand ('taskengine tasks run tenant-off'): it is retired after its first successful run")
    assert json.loads(run_cli("tasks", "list", "--json").stdout)[0]["state"] == "enabled"
    shown = run_cli("logs", "show", run["id"])
    assert "attention: delete_after_run: the task is not retired because this run failed" in shown.stdout

    ready.touch()  # the operator fixes the cause and runs it by hand
    by_hand = run_cli("tasks", "run", "tenant-off")
    assert by_hand.exit_code == 0, by_hand.stderr
    assert rows(db_path, "SELECT retired_at FROM tasks")[0]["retired_at"] is not None
    assert json.loads(run_cli("tasks", "list", "--json").stdout)[0]["state"] == "retired"
    assert [r["name"] for r in rows(db_path, "SELECT name FROM audit WHERE action = 'retired'")] == ["tenant-off"]


def test_a_one_shot_task_that_succeeds_on_a_retry_is_retired(fire, db_path, tmp_path):
    fire('test -e "$1" || { touch "$1"; exit 3; }', tmp_path / "second-time")

    (run,) = rows(db_path, "SELECT status, attempt, attention FROM runs")
    assert (run["status"], run["attempt"], run["attention"]) == ("succeeded", 2, 0)
    assert rows(db_path, "SELECT retired_at FROM tasks")[0]["retired_at"] is not None
    assert rows(db_path, "SELECT * FROM decisions WHERE decision = 'attention'") == []
