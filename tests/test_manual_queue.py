"""``Engine.queue_run`` (``tasks run --no-wait``, issue 15, perf-enqueue): the task is looked up
and its parameters checked in the configuration the engine holds, and that configuration is
confirmed to be the stored one inside the run's own write transaction. A change applied in
between (by another process) is seen: the task is looked up and checked again in the new one."""

from __future__ import annotations

import pytest

from taskengine_core.errors import NotFoundError, ParameterError
from tests.backends import db_path, one, sqlite_only  # noqa: F401  (on SQLite and on PostgreSQL)

BOTH = "tasks:\n  t: {action: command.run, with: {argv: [echo, hi]}}\n  u: {action: command.run, with: {argv: [echo]}}\n"
ONLY_U = "tasks:\n  u: {action: command.run, with: {argv: [echo]}}\n"


def _value(db_path, sql: str, params=()):
    return one(db_path, sql, params)[0]


def _counts(db_path) -> tuple[int, int]:
    return (_value(db_path, "SELECT count(*) FROM runs"),
            _value(db_path, "SELECT count(*) FROM decisions WHERE decision = 'manual'"))


def _apply_between_check_and_write(engine, monkeypatch, apply) -> list:
    """Apply a change just after queue_run checked the parameters (as another process's apply
    landing between the look-up and the write would)."""
    runner = engine.executor.runner
    real, calls = runner.check_params, []

    def check_then_apply(*args, **kwargs):
        real(*args, **kwargs)
        calls.append(args[0].name)
        if len(calls) == 1:
            apply()

    monkeypatch.setattr(runner, "check_params", check_then_apply)
    return calls


def test_a_task_removed_between_look_up_and_write_queues_nothing(applied, db_path, monkeypatch):  # noqa: F811
    from taskengine_core.engine import Engine

    applied(BOTH)
    engine = Engine(db_path, wake_listener=False)
    _apply_between_check_and_write(engine, monkeypatch, lambda: applied(ONLY_U, name="only_u.yaml"))
    with pytest.raises(NotFoundError, match="no task named 't'; see 'taskengine tasks list'"):
        engine.queue_run("t", actor="cli")
    assert _counts(db_path) == (0, 0)
    assert "t" not in engine.runtime.tasks  # the engine holds the new configuration now
    run_id = engine.queue_run("u", actor="cli")
    assert _value(db_path, "SELECT task FROM runs WHERE id = ?", (run_id,)) == "u"


def test_parameters_are_checked_again_against_a_task_changed_in_between(applied, db_path, monkeypatch):  # noqa: F811
    """The first check passes against the old task (no schema for ``argv`` overrides there is
    needed: both are command.run); the change makes ``t`` a different action whose schema the
    override breaks, and the second check, in the new configuration, refuses it."""
    from taskengine_core.engine import Engine

    applied(BOTH)
    engine = Engine(db_path, wake_listener=False)
    changed = "tasks:\n  t: {action: command.run, with: {argv: [echo, hi], timeout: 5}}\n"
    calls = _apply_between_check_and_write(engine, monkeypatch, lambda: applied(changed, name="changed.yaml"))
    run_id = engine.queue_run("t", {"argv": ["echo", "again"]}, actor="cli")
    assert calls == ["t", "t"]  # checked in the old configuration, then again in the new one
    assert engine.runtime.tasks["t"].params.get("timeout") == 5
    assert _value(db_path, "SELECT params FROM runs WHERE id = ?", (run_id,)) == '{"argv": ["echo", "again"]}'
    with pytest.raises(ParameterError, match="nothing was queued"):
        engine.queue_run("t", {"argv": "not a list"}, actor="cli")
    assert _counts(db_path) == (1, 1)


def test_a_task_applied_after_the_engine_loaded_is_found(applied, db_path):  # noqa: F811
    from taskengine_core.engine import Engine

    applied(ONLY_U)
    engine = Engine(db_path, wake_listener=False)
    applied(BOTH, name="both.yaml")
    run_id = engine.queue_run("t", actor="cli")
    assert _value(db_path, "SELECT task FROM runs WHERE id = ?", (run_id,)) == "t"
    assert _value(db_path, "SELECT reason FROM decisions WHERE run_id = ?", (run_id,)) == "run by hand by cli"


def test_each_queued_run_is_committed_when_queue_run_returns(applied, db_path):  # noqa: F811
    """Seen from another connection at once: the caller prints the id only after its commit."""
    from taskengine_core.engine import Engine

    applied(BOTH)
    engine = Engine(db_path, wake_listener=False)
    for n in range(1, 4):
        run_id = engine.queue_run("t", actor="cli")  # each read below is a new connection
        assert one(db_path, "SELECT status, trigger FROM runs WHERE id = ?", (run_id,)) == ("pending", "manual")
        assert _counts(db_path) == (n, n)


@sqlite_only("the stored task is changed with SQLite's json_set")
def test_a_bad_task_value_is_refused_at_every_queue_run_a_good_one_passes(applied, db_path):  # noqa: F811
    """The check of a task's own values (no --param) is remembered only when they pass: a
    task whose values the action refuses is refused each time, and nothing is queued."""
    from taskengine_core.engine import Engine
    from taskengine_core.store import open_store

    applied(BOTH)
    store = open_store(db_path)
    with store.write() as w:  # made wrong for the action (as a plugin with a stricter schema would)
        w.conn.execute("UPDATE tasks SET spec = json_set(spec, '$.with.argv', 'echo') WHERE name = 'u'")
    store.close()
    engine = Engine(db_path, wake_listener=False)
    for _ in range(2):
        engine.queue_run("t", actor="cli")
        with pytest.raises(ParameterError, match="task 'u': parameter argv: .*nothing was queued"):
            engine.queue_run("u", actor="cli")
    assert _counts(db_path) == (2, 2)
