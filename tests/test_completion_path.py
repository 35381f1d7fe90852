"""What the executor's completion path keeps while it does less per run (issue 15, perf-enqueue):
an action's cancel flag is made when a worker takes the run, yet a run cancelled while it waits
claimed ahead starts with the flag set; and the run_finished hook reaches the engine's
notifications and the plugins in the order pluggy's ``call_extra`` gives, without it."""

from __future__ import annotations

import json
import threading
import time

import pluggy
import pytest

from taskengine_core.hookspecs import hookimpl

HOLD = threading.Event()
SEEN: dict[str, bool] = {}


def hold(params, ctx):
    HOLD.wait(10)


def note_cancel(params, ctx):
    SEEN[ctx.run_id] = ctx.cancelled.is_set()


class Plugin:
    __name__ = "completion-path-test"

    @hookimpl
    def register_actions(self, register):
        register("cp.hold", hold, schema={"type": "object"})
        register("cp.note", note_cancel, schema={"type": "object"})


def test_a_run_cancelled_while_it_waits_claimed_ahead_starts_with_its_flag_set(applied, db_path):
    """Concurrency ``replace``: run r1 waits in this engine's queue (claimed ahead, no worker
    free) when r2 replaces it; the worker that later takes r1 hands its action a set flag."""
    from taskengine_core.engine import Engine
    from taskengine_core.plugins import get_plugin_manager

    manager = get_plugin_manager(extra_plugins=[Plugin()])
    applied("tasks:\n  h: {action: cp.hold, concurrency: parallel}\n"
            "  r: {action: cp.note, concurrency: replace}\n", manager=manager)
    HOLD.clear()
    SEEN.clear()
    engine = Engine(db_path, manager=manager, workers=1, wake_listener=False)
    engine.executor.start()
    try:
        engine.queue_run("h")
        engine.step()  # the one worker takes h and holds
        deadline = time.monotonic() + 10
        while not all(e.started for e in engine.executor._inflight.values()) and time.monotonic() < deadline:
            time.sleep(0.005)
        engine.executor.pace.mean = 0.001  # attempts have been quick: steps claim ahead
        first = engine.queue_run("r")
        engine.step()  # r1 claimed ahead: running in the database, waiting for a worker
        entry = engine.executor._inflight[first]
        assert not entry.started
        second = engine.queue_run("r")
        engine.step()  # r2 replaces r1: r1 is told to stop before any worker took it
        assert entry.cancelled is not None and entry.cancelled.is_set()
        HOLD.set()
        engine.run_until_idle(timeout=30)
    finally:
        HOLD.set()
        engine.executor.stop(1)
    assert SEEN == {first: True, second: False}
    status = dict(engine.store.conn.execute("SELECT id, status FROM runs WHERE task = 'r'").fetchall())
    assert status[second] == "succeeded"


def test_a_run_a_worker_takes_gets_a_fresh_flag_of_its_own(applied, db_path):
    from taskengine_core.engine import Engine
    from taskengine_core.plugins import get_plugin_manager

    manager = get_plugin_manager(extra_plugins=[Plugin()])
    applied("tasks:\n  r: {action: cp.note, concurrency: parallel}\n", manager=manager)
    SEEN.clear()
    engine = Engine(db_path, manager=manager, workers=2, wake_listener=False)
    engine.executor.start()
    try:
        ids = [engine.queue_run("r") for _ in range(5)]
        engine.run_until_idle(timeout=30)
    finally:
        engine.executor.stop(1)
    assert SEEN == {run_id: False for run_id in ids}


# -- the run_finished hook ---------------------------------------------------------------------


class _Recorder:
    def __init__(self, calls: list, fail: bool = False) -> None:
        self.calls, self.fail = calls, fail

    def run_finished(self, run) -> None:
        self.calls.append("notifications")
        if self.fail:
            raise RuntimeError("notifications broke")


def _plugin(name: str, calls: list, **opts):
    marker = pluggy.HookimplMarker("taskengine")

    class Impl:
        __name__ = name

        @marker(**opts)
        def run_finished(self, run):
            calls.append(name)
            return name

    if opts.get("hookwrapper"):
        def wrapped(self, run):
            calls.append(name + ":before")
            yield
            calls.append(name + ":after")

        Impl.run_finished = marker(hookwrapper=True)(wrapped)
    return Impl()


def _manager(calls: list, kinds: list[dict]):
    from taskengine_core import hookspecs

    manager = pluggy.PluginManager("taskengine")
    manager.add_hookspecs(hookspecs)
    for i, opts in enumerate(kinds):
        manager.register(_plugin(f"p{i}", calls, **opts), name=f"p{i}")
    return manager


@pytest.mark.parametrize("kinds", [
    [],
    [{}],
    [{}, {}, {"trylast": True}],
    [{"tryfirst": True}, {}],
    [{}, {"hookwrapper": True}],
], ids=["none", "one", "plain-and-trylast", "tryfirst", "hookwrapper"])
def test_run_finished_reaches_everyone_in_call_extras_order(kinds):
    from taskengine_core.context import RunInfo
    from taskengine_core.notify import HooksWithNotifications

    run = RunInfo("r1", "t", "succeeded", None, 0.1, None)
    expected: list = []
    manager = _manager(expected, kinds)
    expected_result = manager.hook.run_finished.call_extra([_Recorder(expected).run_finished], {"run": run})
    calls: list = []
    manager = _manager(calls, kinds)
    result = HooksWithNotifications(manager.hook, _Recorder(calls)).run_finished(run=run)
    assert calls == expected and "notifications" in calls
    assert result == expected_result


def test_run_finished_notifications_failing_stops_the_rest_as_call_extra_does():
    from taskengine_core.context import RunInfo
    from taskengine_core.notify import HooksWithNotifications

    run = RunInfo("r1", "t", "failed", "boom", 0.1, None)
    expected: list = []
    manager = _manager(expected, [{}])
    with pytest.raises(RuntimeError, match="notifications broke"):
        manager.hook.run_finished.call_extra([_Recorder(expected, fail=True).run_finished], {"run": run})
    calls: list = []
    manager = _manager(calls, [{}])
    with pytest.raises(RuntimeError, match="notifications broke"):
        HooksWithNotifications(manager.hook, _Recorder(calls, fail=True)).run_finished(run=run)
    assert calls == expected == ["notifications"]


# -- an attempt's parameters ---------------------------------------------------------------------

GOT: list = []


def keep_params(params, ctx):
    GOT.append(json.loads(json.dumps(params)))  # as it came
    params.setdefault("nested", {})["added"] = "by the action"  # an action may change what it got
    params["extra"] = 1
    return None


def strict(params, ctx):
    GOT.append(params)


class ParamsPlugin:
    __name__ = "completion-params-test"

    @hookimpl
    def register_actions(self, register):
        register("cp.keep", keep_params, schema={"type": "object"})
        register("cp.strict", strict, schema={
            "type": "object", "properties": {"n": {"type": "integer"}, "who": {"type": "string"}},
            "additionalProperties": False})


def _run_all(db_path, manager, rules: str, applied, *queued) -> list:
    from taskengine_core.engine import Engine

    applied(rules, manager=manager)
    GOT.clear()
    engine = Engine(db_path, manager=manager, workers=1, wake_listener=False)
    engine.executor.start()
    try:
        for task, params in queued:
            engine.queue_run(task, params)
            engine.run_until_idle(timeout=30)
    finally:
        engine.executor.stop(1)
    return engine.store.conn.execute("SELECT task, status, error FROM runs ORDER BY id").fetchall()


@pytest.fixture
def params_manager():
    from taskengine_core.plugins import get_plugin_manager

    return get_plugin_manager(extra_plugins=[ParamsPlugin()])


def test_an_action_changing_its_parameters_never_changes_the_next_runs(applied, db_path, params_manager):
    rows = _run_all(db_path, params_manager, "tasks:\n  k: {action: cp.keep, with: {nested: {a: [1, 2]}, s: x}}\n",
                    applied, ("k", None), ("k", None), ("k", None))
    assert [(task, status) for task, status, _ in rows] == [("k", "succeeded")] * 3
    # each attempt got the task's values as written, not what the previous one made of them
    assert GOT == [{"nested": {"a": [1, 2]}, "s": "x"}] * 3


def test_templates_and_secret_references_are_rendered_at_every_attempt(applied, db_path, params_manager,
                                                                        monkeypatch):
    from taskengine_core.engine import Engine

    rules = 'tasks:\n  s: {action: cp.strict, with: {who: "${env:CP_WHO}"}}\n  t: {action: cp.strict, with: {who: "{{ run.id }}"}}\n'
    applied(rules, manager=params_manager)
    GOT.clear()
    engine = Engine(db_path, manager=params_manager, workers=1, wake_listener=False)
    engine.executor.start()
    ids = []
    try:
        for who in ("alice", "bob"):
            monkeypatch.setenv("CP_WHO", who)
            engine.queue_run("s")
            engine.run_until_idle(timeout=30)
        for _ in range(2):
            ids.append(engine.queue_run("t"))
            engine.run_until_idle(timeout=30)
    finally:
        engine.executor.stop(1)
    assert GOT == [{"who": "alice"}, {"who": "bob"}, {"who": ids[0]}, {"who": ids[1]}]


def test_a_task_the_schema_refuses_fails_at_every_attempt_naming_the_parameter(applied, db_path, params_manager):
    """Parameters a check remembered as passing are the task's own; a task whose own values
    fail (a plugin's schema stricter than when it was applied, say) fails each attempt."""
    from taskengine_core.clock import to_iso
    from taskengine_core.engine import Engine
    from taskengine_core.evaluator import NewRun, insert_runs
    from taskengine_core.store import open_store

    applied("tasks:\n  s: {action: cp.strict, with: {n: 1}}\n", manager=params_manager)
    store = open_store(db_path)
    with store.write() as w:  # as if applied when the schema allowed it
        w.conn.execute("""UPDATE tasks SET spec = json_set(spec, '$.with.n', 'one') WHERE name = 's'""")
        w.conn.execute("UPDATE meta SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT) WHERE key = 'config_generation'")
    store.close()
    GOT.clear()
    engine = Engine(db_path, manager=params_manager, workers=1, wake_listener=False)
    engine.executor.start()
    try:
        for _ in range(2):
            now = to_iso(engine.clock.now())
            with engine.store.write() as w:  # queued without the queue-time check (a schedule's run)
                insert_runs(w.conn, [NewRun(engine.runtime.tasks["s"], "manual", now)], now)
            engine.run_until_idle(timeout=30)
    finally:
        engine.executor.stop(1)
    rows = engine.store.conn.execute("SELECT status, error FROM runs").fetchall()
    assert GOT == [] and len(rows) == 2
    for status, error in rows:
        assert status == "failed" and error.startswith("task 's': parameters invalid after rendering: with.n:")


def test_a_step_writing_outcomes_claims_for_the_workers_they_free_in_the_same_transaction(applied, db_path):
    """Two workers, four due runs, no claiming ahead: the first step claims two; once both
    have finished, the next step writes their outcomes and claims the other two in the same
    transaction (it used to count them as still busy and leave the claim to one more commit)."""
    from taskengine_core.engine import Engine
    from taskengine_core.plugins import get_plugin_manager
    from taskengine_core.store.runs import count_by_status

    manager = get_plugin_manager(extra_plugins=[Plugin()])
    applied("tasks:\n  r: {action: cp.note, concurrency: parallel}\n", manager=manager)
    engine = Engine(db_path, manager=manager, workers=2, wake_listener=False)
    engine.executor.start()
    try:
        for _ in range(4):
            engine.queue_run("r")
        engine.executor.step(engine.runtime)
        assert count_by_status(engine.store.conn) == {"running": 2, "pending": 2}
        deadline = time.monotonic() + 10
        while engine.executor._done.qsize() < 2 and time.monotonic() < deadline:
            time.sleep(0.005)
        engine.executor.pace.mean = 1000.0  # attempts seem slow: no claiming ahead, only the freed workers
        engine.executor.step(engine.runtime)  # one write transaction: the outcomes and the claim
        assert count_by_status(engine.store.conn) == {"succeeded": 2, "running": 2}
        engine.run_until_idle(timeout=30)
        assert count_by_status(engine.store.conn) == {"succeeded": 4}
    finally:
        engine.executor.stop(1)


# -- how many due rows a claim reads -----------------------------------------------------------


def _claim(engine, limit: int):
    from taskengine_core.runs import claim_due

    with engine.store.write() as w:
        claimed, _ = claim_due(w.conn, engine.runtime, engine.clock.now(), "test-owner", 60.0, limit)
    return [c.task.name for c in claimed]


def test_a_claim_fills_its_limit_past_runs_a_queue_task_holds_back(applied, db_path):
    """A task limited to one run (``queue``) has its second due run passed over: the claim reads
    further and still claims ``limit`` runs."""
    engine, _ = _queued(applied, db_path, "tasks:\n  q: {action: cp.note, concurrency: queue}\n"
                        "  p: {action: cp.note, concurrency: parallel}\n", ("q", "q", "q", "p"))
    assert _claim(engine, 2) == ["q", "p"]


def _queued(applied, db_path, rules: str, tasks: tuple):
    """An engine (not started) on ``rules``, with a run of each of ``tasks`` queued in order."""
    from taskengine_core.engine import Engine
    from taskengine_core.plugins import get_plugin_manager

    manager = get_plugin_manager(extra_plugins=[Plugin()])
    applied(rules, manager=manager)
    engine = Engine(db_path, manager=manager, wake_listener=False)
    for task in tasks:
        engine.queue_run(task)
    return engine, manager


def test_with_only_parallel_tasks_a_claim_takes_the_first_due_runs_and_cancels_a_deleted_tasks(applied, db_path):
    from taskengine_core.store.runs import count_by_status

    engine, manager = _queued(applied, db_path, "tasks:\n  p: {action: cp.note, concurrency: parallel}\n"
                              "  gone: {action: cp.note, concurrency: parallel}\n", ("gone", "p", "p", "p"))
    applied("tasks:\n  p: {action: cp.note, concurrency: parallel}\n", manager=manager, name="later.yaml")
    engine._refresh_config()
    assert _claim(engine, 2) == ["p"]  # the first two due: one of a task no longer defined
    assert count_by_status(engine.store.conn) == {"cancelled": 1, "running": 1, "pending": 2}
    assert _claim(engine, 2) == ["p", "p"]
    assert count_by_status(engine.store.conn) == {"cancelled": 1, "running": 3}


def test_run_finished_is_heard_by_a_plugin_for_every_task_else_only_for_tasks_with_notify(applied, db_path):
    from taskengine_core.engine import Engine
    from taskengine_core.notify import HooksWithNotifications

    applied("tasks:\n  quiet: {action: command.run, with: {argv: [echo]}}\n"
            "  told: {action: command.run, with: {argv: [echo]}, notify: {via: email, to: ops@example.org}}\n")
    engine = Engine(db_path, wake_listener=False)
    heard = engine.executor.hook.heard()
    assert (heard("quiet"), heard("told"), heard("gone")) == (False, True, False)
    calls: list = []
    manager = _manager(calls, [{}])
    with_plugin = HooksWithNotifications(manager.hook, engine.notifications).heard()
    assert (with_plugin("quiet"), with_plugin("told")) == (True, True)
