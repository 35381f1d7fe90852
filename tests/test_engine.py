"""The whole path: event -> rule -> run -> action -> logs, with command.run and test plugins."""

from __future__ import annotations

import json
import time

import pytest

from taskengine_core.engine import Engine
from tests import plugins_for_tests
from tests.backends import connection, dump, execute, is_postgres, one, rows, stored_bytes
from tests.backends import db_path  # noqa: F401  (every test on SQLite and on PostgreSQL)
from tests.conftest import FakeClock


def runs(db_path, task=None):
    sql = "SELECT * FROM runs" + (" WHERE task = ?" if task else "") + " ORDER BY created_at, rowid"
    return rows(db_path, sql, (task,) if task else ())


def attempts(db_path, run_id):
    return rows(db_path, "SELECT * FROM attempts WHERE run_id = ? ORDER BY number", (run_id,))


def decisions(db_path, **where):
    clause = " AND ".join(f"{k} = ?" for k in where) or "1 = 1"
    return rows(db_path, f"SELECT * FROM decisions WHERE {clause} ORDER BY id", tuple(where.values()))


@pytest.fixture
def plugin_engine(applied, engine_factory):
    """Apply ``rules`` with the misbehaving test plugins installed; an engine that has them."""

    def make(rules: str, **engine_kwargs) -> Engine:
        manager = plugins_for_tests.manager()
        applied(rules, manager=manager)
        return engine_factory(manager=manager, **engine_kwargs)

    return make




def test_emit_run_logged_end_to_end(applied, run_cli, engine_factory, db_path):
    applied("""
        tasks:
          greet:
            action: command.run
            with: {argv: [echo, "hello {{ event.data.user }} from {{ event.source }}"]}
        events:
          alice-login: {on: user.login, when: {data.user: alice}, tasks: [greet]}
    """)
    emitted = run_cli("emit", "user.login", "user=alice")
    assert emitted.exit_code == 0
    event_id = emitted.stdout.strip()
    other = run_cli("emit", "user.login", "user=bob").stdout.strip()
    engine_factory().run_until_idle()

    (run,) = runs(db_path, "greet")
    assert run["status"] == "succeeded" and run["event_id"] == event_id and run["rule"] == "alice-login"
    assert json.loads(run["output"])["stdout"] == "hello alice from cli\n"
    (attempt,) = attempts(db_path, run["id"])
    assert attempt["outcome"] == "succeeded" and attempt["plugin"] == "taskengine-core"
    assert [d["decision"] for d in decisions(db_path, event_id=event_id)] == ["matched"]
    assert decisions(db_path, event_id=other) == []

    listed = json.loads(run_cli("logs", "list", "--json").stdout)
    assert [r["task"] for r in listed] == ["greet"]
    shown = run_cli("logs", "show", run["id"])
    assert "attempt 1: succeeded" in shown.stdout
    explained = run_cli("logs", "explain", other).stdout
    assert "decisions: none (no rule matched when it was evaluated)" in explained
    assert "no     alice-login: data.user is 'bob', expected 'alice'" in explained
    # no rule listens for task.* events here, so the engine does not store them
    assert one(db_path, "SELECT count(*) FROM events WHERE source = 'taskengine'")[0] == 0


def test_thirty_day_delay_with_an_injected_clock(applied, engine_factory, db_path):
    applied("""
        tasks:
          disable-temp-user: {action: command.run, with: {argv: [echo, "disable {{ event.data.user }}"]}}
        events:
          temp-created: {on: user.created, when: {data.group: temporary}, delay: 30d, tasks: [disable-temp-user]}
    """)
    clock = FakeClock()
    engine = engine_factory(clock=clock)
    engine.emit("user.created", {"user": "tmp1", "group": "temporary"})
    engine.run_until_idle()
    (run,) = runs(db_path)
    assert run["status"] == "pending" and run["not_before"] == "2026-03-31T12:00:00.000000Z"
    clock.advance(29 * 86400)
    engine.run_until_idle()
    assert runs(db_path)[0]["status"] == "pending"
    clock.advance(86400)
    engine.run_until_idle()
    (run,) = runs(db_path)
    assert run["status"] == "succeeded"
    assert json.loads(run["output"])["stdout"] == "disable tmp1\n"


def test_retries_survive_a_restart(applied, engine_factory, db_path):
    applied("""
        tasks:
          flaky: {action: test.flaky, with: {succeed_on: 3}, retry: {attempts: 3, backoff: 60s, jitter: false}}
        events:
          go: {on: go, tasks: [flaky]}
    """, manager=plugins_for_tests.manager())
    clock = FakeClock()
    first = engine_factory(clock=clock, manager=plugins_for_tests.manager())
    first.emit("go")
    first.run_until_idle()
    (run,) = runs(db_path)
    assert (run["status"], run["attempt"], run["not_before"]) == ("pending", 1, "2026-03-01T12:01:00.000000Z")
    first.executor.stop(0)

    second = engine_factory(clock=clock, manager=plugins_for_tests.manager())  # a restart
    clock.advance(60)
    second.run_until_idle()
    assert runs(db_path)[0]["attempt"] == 2 and runs(db_path)[0]["status"] == "pending"
    clock.advance(120)  # backoff doubles
    second.run_until_idle()
    (run,) = runs(db_path)
    assert run["status"] == "succeeded" and json.loads(run["output"]) == {"attempt": 3}
    assert [a["outcome"] for a in attempts(db_path, run["id"])] == ["failed", "failed", "succeeded"]


def test_retry_backoff_doubles_up_to_its_cap_with_jitter(plugin_engine, db_path):
    """Jitter is on by default: each wait lies between half and all of ``backoff * 2**(n-1)``,
    which stops at ``max_backoff``."""
    from taskengine_core.clock import from_iso

    clock = FakeClock()
    engine = plugin_engine("""
        tasks:
          flaky: {action: test.flaky, with: {succeed_on: 6}, retry: {attempts: 6, backoff: 10s, max_backoff: 25s}}
        events:
          go: {on: go, tasks: [flaky]}
    """, clock=clock)
    engine.emit("go")
    waits = []
    for _ in range(5):
        engine.run_until_idle(max_wait=0)
        (run,) = runs(db_path)
        assert run["status"] == "pending"
        waits.append((from_iso(run["not_before"]) - clock.now()).total_seconds())
        clock.advance(waits[-1])
    engine.run_until_idle(max_wait=0)
    (run,) = runs(db_path)
    assert run["status"] == "succeeded" and run["attempt"] == 6
    for wait, base in zip(waits, (10, 20, 25, 25, 25)):
        assert base / 2 <= wait <= base, waits
    assert len(set(waits)) == 5, waits  # jittered: no two waits alike


def test_timeout_kills_a_hanging_command(applied, engine_factory, db_path, tmp_path):
    pidfile = tmp_path / "pid"
    applied(f"""
        tasks:
          hang: {{action: command.run, with: {{shell: "echo $$ > {pidfile}; exec sleep 60"}}, timeout: 1s}}
        events:
          go: {{on: go, tasks: [hang]}}
    """)
    engine = engine_factory()
    engine.emit("go")
    engine.run_until_idle()
    (run,) = runs(db_path)
    assert run["status"] == "failed" and "timed out after 1" in run["error"]
    import os

    pid = int(pidfile.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_a_plugin_that_hangs_past_its_timeout_does_not_stop_other_runs(plugin_engine, db_path):
    engine = plugin_engine("""
        tasks:
          stuck: {action: test.hang, with: {seconds: 30}, timeout: 0.5}
          fine: {action: test.record, with: {x: 1}}
        events:
          go: {on: go, tasks: [stuck, fine]}
    """, workers=1)
    engine.emit("go")
    engine.run_until_idle(timeout=15)
    by_task = {r["task"]: r for r in runs(db_path)}
    assert by_task["stuck"]["status"] == "failed"
    assert by_task["stuck"]["error"].startswith("timed out after 0.5s")
    assert by_task["fine"]["status"] == "succeeded"


@pytest.mark.parametrize("action, expected", [
    ("test.explode", "RuntimeError: kaboom from the plugin"),
    ("test.garbage", "the action returned output that is not JSON-serialisable"),
    ("test.fatal", "permanent failure"),
])
def test_a_misbehaving_plugin_fails_only_its_own_run(plugin_engine, db_path, action, expected):
    engine = plugin_engine(f"""
        tasks:
          bad: {{action: {action}, retry: {{attempts: 1}}}}
          good: {{action: test.record}}
        events:
          go: {{on: go, tasks: [bad, good]}}
    """)
    engine.emit("go")
    engine.run_until_idle()
    by_task = {r["task"]: r for r in runs(db_path)}
    assert by_task["bad"]["status"] == "failed" and expected in by_task["bad"]["error"]
    assert by_task["good"]["status"] == "succeeded"
    if action == "test.explode":
        (attempt,) = attempts(db_path, by_task["bad"]["id"])
        assert "Traceback" in attempt["traceback"] and "kaboom" in attempt["traceback"]


def test_chaining_task_failed_fires_another_task(applied, engine_factory, db_path):
    applied("""
        tasks:
          backup: {action: command.run, with: {argv: [sh, -c, "echo disk full >&2; exit 2"]}}
          alert: {action: command.run, with: {argv: [echo, "{{ event.data.task }}: {{ event.data.error }}"]}}
        events:
          nightly: {on: backup.start, tasks: [backup]}
          on-failure: {on: task.failed, when: {data.task: backup}, tasks: [alert]}
    """)
    engine = engine_factory()
    engine.emit("backup.start")
    engine.run_until_idle()
    by_task = {r["task"]: r for r in runs(db_path)}
    assert by_task["backup"]["status"] == "failed"
    assert by_task["alert"]["status"] == "succeeded"
    assert json.loads(by_task["alert"]["output"])["stdout"] == "backup: command exited with code 2\n"


def test_a_chain_that_loops_is_stopped(applied, engine_factory, db_path):
    applied("""
        tasks:
          again: {action: command.run, with: {argv: ["false"]}}
        events:
          start: {on: start, tasks: [again]}
          loop: {on: task.failed, tasks: [again]}
    """)
    engine = engine_factory()
    engine.emit("start")
    engine.run_until_idle(timeout=60)
    assert len(runs(db_path)) == 11  # the first run and ten chained ones
    (stop,) = [d for d in decisions(db_path, decision="skipped")]
    assert stop["reason"].startswith("chain of task events deeper than 10")


def test_disabled_task_is_skipped_and_logged_but_runs_by_hand(applied, run_cli, engine_factory, db_path):
    applied("""
        tasks:
          t: {action: command.run, with: {argv: [echo, manual]}}
        events:
          e: {on: go, tasks: [t]}
    """)
    assert run_cli("tasks", "disable", "t").stderr == "task t disabled\n"
    event_id = run_cli("emit", "go").stdout.strip()
    engine_factory().run_until_idle()
    assert runs(db_path) == []
    (d,) = decisions(db_path, event_id=event_id)
    assert (d["decision"], d["reason"], d["task"]) == ("skipped", "task is disabled", "t")
    manual = run_cli("tasks", "run", "t")
    assert manual.exit_code == 0, manual.output
    assert manual.stderr.startswith(f"run {manual.stdout.split()[0]} succeeded")
    assert runs(db_path)[0]["trigger"] == "manual"
    assert run_cli("tasks", "enable", "t").stderr == "task t enabled\n"


def test_manual_run_with_params_and_failure_exit_code(applied, run_cli, db_path):
    applied("""
        tasks:
          t: {action: command.run, with: {argv: [sh, -c, "exit 0"]}}
    """)
    ok = run_cli("tasks", "run", "t", "--param", 'argv=["echo", "overridden"]', "--json")
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["output"]["stdout"] == "overridden\n"
    bad = run_cli("tasks", "run", "t", "--param", 'argv=["sh", "-c", "exit 4"]')
    assert bad.exit_code == 1
    assert bad.stderr.rstrip().endswith("command exited with code 4")
    missing = run_cli("tasks", "run", "nope")
    assert missing.exit_code == 1
    assert missing.stderr == "Error: no task named 'nope'; see 'taskengine tasks list'\n"


def test_a_dotted_param_adds_to_a_mapping_and_keeps_the_rest(applied, run_cli):
    """``--param env.B=x`` used to replace the task's whole ``env``."""
    applied("""
        tasks:
          t: {action: command.run, with: {argv: [sh, -c, 'echo "A=$A B=$B"'], env: {A: keep-me, B: old}}}
    """)
    result = run_cli("tasks", "run", "t", "--param", "env.B=added", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["output"]["stdout"] == "A=keep-me B=added\n"
    replaced = run_cli("tasks", "run", "t", "--param", 'env={"B": "only"}', "--json")
    assert json.loads(replaced.stdout)["output"]["stdout"] == "A=keep-me B=only\n"


def test_a_literal_secret_parameter_is_refused_and_nothing_stored(applied, run_cli, db_path, monkeypatch):
    applied("""
        tasks:
          t: {action: command.run, with: {argv: [sh, -c, 'echo "$T"'], env: {T: x}}}
    """)
    before = dump(db_path)
    literal = run_cli("tasks", "run", "t", "--param", "env.token=hunter2-canary")
    assert literal.exit_code == 1
    assert literal.stderr == ("Error: parameter env.token: a secret must be a reference such as ${env:NAME} "
                              "or ${file:PATH}, not a literal value: a literal would be stored in the database\n")
    numeric = run_cli("tasks", "run", "t", "--param", "env.password=123456")  # JSON: reads as a number
    assert numeric.exit_code == 1 and "parameter env.password: a secret must be a reference" in numeric.stderr
    suffixed = run_cli("tasks", "run", "t", "--param", "env.GITHUB_TOKEN=ghp_canary")  # not just exact names
    assert suffixed.exit_code == 1 and "parameter env.GITHUB_TOKEN: a secret must be a reference" in suffixed.stderr
    assert dump(db_path) == before
    monkeypatch.setenv("MY_TOKEN", "hunter2-canary")
    referenced = run_cli("tasks", "run", "t", "--param", "env.token=${env:MY_TOKEN}", "--json")
    assert referenced.exit_code == 0, referenced.output
    stored = stored_bytes(db_path)  # SQLite: the file and its -wal too
    assert b"hunter2-canary" not in stored and b"${env:MY_TOKEN}" in stored


def test_duplicate_source_id_triggers_once(applied, run_cli, engine_factory, db_path):
    applied("""
        tasks:
          t: {action: command.run, with: {argv: [echo]}}
        events:
          e: {on: go, tasks: [t]}
    """)
    first = run_cli("emit", "go", "--source", "crm", "--id", "42")
    second = run_cli("emit", "go", "--source", "crm", "--id", "42")
    assert second.stderr == f"duplicate of event {first.stdout.strip()} (same source and id): it triggers nothing\n"
    engine_factory().run_until_idle()
    assert len(runs(db_path)) == 1


def test_throttle_once_per_key_within_window(applied, engine_factory, db_path):
    applied("""
        tasks:
          t: {action: command.run, with: {argv: [echo]}}
        events:
          e: {on: alarm, throttle: {window: 10m, key: [data.host]}, tasks: [t]}
    """)
    clock = FakeClock()
    engine = engine_factory(clock=clock)
    for host in ("a", "a", "b", "a"):
        engine.emit("alarm", {"host": host})
    engine.run_until_idle()
    assert len(runs(db_path)) == 2
    assert len(decisions(db_path, decision="throttled")) == 2
    clock.advance(601)
    engine.emit("alarm", {"host": "a"})
    engine.run_until_idle()
    assert len(runs(db_path)) == 3


def test_a_throttle_window_starts_only_when_the_rule_fires(applied, engine_factory, db_path, run_cli):
    """An event whose task was disabled ran nothing, so it must not use up the window."""
    applied("""
        tasks:
          t: {action: command.run, with: {argv: [echo]}}
        events:
          e: {on: alarm, throttle: {window: 1h}, tasks: [t]}
    """)
    run_cli("tasks", "disable", "t")
    engine = engine_factory(clock=FakeClock())
    first = engine.emit("alarm")
    engine.run_until_idle()
    assert [d["reason"] for d in decisions(db_path, event_id=first)] == ["task is disabled"]
    run_cli("tasks", "enable", "t")
    second = engine.emit("alarm")
    third = engine.emit("alarm")
    engine.run_until_idle()
    assert [(d["decision"], d["event_id"]) for d in decisions(db_path)][1:] == [
        ("matched", second), ("throttled", third)]
    assert [r["event_id"] for r in runs(db_path)] == [second]


def _overlaps(rows):
    spans = sorted((r["started_at"], r["finished_at"]) for r in rows if r["started_at"])
    return any(spans[i + 1][0] < spans[i][1] for i in range(len(spans) - 1))


@pytest.mark.parametrize("policy", ["parallel", "queue", "skip", "replace"])
def test_concurrency_policies(applied, engine_factory, db_path, policy):
    applied(f"""
        tasks:
          slow: {{action: command.run, with: {{argv: [sleep, "0.4"]}}, concurrency: {policy}}}
        events:
          go: {{on: go, tasks: [slow]}}
    """)
    engine = engine_factory()
    engine.emit("go")
    engine.step()  # the first run starts
    time.sleep(0.1)
    engine.emit("go")
    engine.emit("go")
    engine.run_until_idle()
    rows = runs(db_path)
    statuses = sorted(r["status"] for r in rows)
    if policy == "parallel":
        assert statuses == ["succeeded"] * 3 and _overlaps(rows)
    elif policy == "queue":
        assert statuses == ["succeeded"] * 3 and not _overlaps(rows)
    elif policy == "skip":
        assert statuses == ["skipped", "skipped", "succeeded"]
        assert all("concurrency: skip" in r["error"] for r in rows if r["status"] == "skipped")
    else:
        assert statuses == ["cancelled", "cancelled", "succeeded"]
        reasons = sorted(r["error"] for r in rows if r["status"] == "cancelled")
        assert reasons[0].startswith("command cancelled") and reasons[1].startswith("replaced by run")


def _same_pid_restarted():
    """An owner with this process's pid but another start: pid 1 after a container restart."""
    import os
    import socket

    from taskengine_core.runs import process_start

    started = process_start(os.getpid())
    if started is None:
        pytest.skip("no /proc here to tell a process's start time")
    return f"{socket.gethostname()}:{os.getpid()}:{started.split('.')[0]}.1"


@pytest.mark.parametrize("owner", ["gone", "same pid, restarted"])
def test_runs_left_running_by_a_dead_process_are_recovered(applied, engine_factory, db_path, owner):
    manager = plugins_for_tests.manager()
    applied("""
        tasks:
          safe: {action: test.record}
          unsafe: {action: test.sticky, retry: {attempts: 3}}
    """, manager=manager)
    import socket

    dead = f"{socket.gethostname()}:999999:0" if owner == "gone" else _same_pid_restarted()
    # SQLite (one machine): the dead pid decides, whatever the lease says. PostgreSQL (shared by
    # machines): only the lease does (runs.find_orphans), so there the dead owner's lease has expired.
    expires = "2026-01-01T00:01:00.000000Z" if is_postgres(db_path) else "2999-01-01T00:00:00.000000Z"
    for run_id, task in (("r-safe", "safe"), ("r-unsafe", "unsafe")):
        execute(db_path, "INSERT INTO runs (id, task, status, trigger, not_before, created_at, started_at, attempt, "
                     "max_attempts, lease_owner, lease_expires) VALUES (?, ?, 'running', 'manual', "
                     "'2026-01-01T00:00:00.000000Z', '2026-01-01T00:00:00.000000Z', '2026-01-01T00:00:01.000000Z', "
                     "1, ?, ?, ?)",
                     (run_id, task, 1 if task == "safe" else 3, dead, expires))  # safe: the default, one attempt
    engine = engine_factory(manager=manager)
    recovered = engine.executor.recover(engine.runtime)
    assert sorted(recovered) == ["r-safe", "r-unsafe"]
    (interrupted,) = attempts(db_path, "r-unsafe")
    assert interrupted["started_at"] == "2026-01-01T00:00:01.000000Z"  # when it really started
    assert interrupted["plugin"] == "(not installed)"  # the in-process test plugin's distribution
    engine.run_until_idle(max_wait=30)
    by_id = {r["id"]: r for r in runs(db_path)}
    assert by_id["r-safe"]["status"] == "succeeded" and by_id["r-safe"]["attempt"] == 2
    unsafe = by_id["r-unsafe"]
    assert unsafe["status"] == "interrupted" and unsafe["attention"] == 1
    assert "not idempotent" in unsafe["error"]
    assert [a["outcome"] for a in attempts(db_path, "r-unsafe")] == ["interrupted"]


def test_apply_while_running_takes_effect(applied, db_path):
    applied("tasks:\n  a: {action: command.run, with: {argv: [echo, a]}}\n")
    engine = Engine(db_path, poll_interval=0.05)
    engine.start()
    try:
        applied("""
            tasks:
              a: {action: command.run, with: {argv: [echo, a]}}
            events:
              e: {on: go, tasks: [a]}
        """)
        engine.emit("go")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not [r for r in runs(db_path) if r["status"] == "succeeded"]:
            time.sleep(0.05)
    finally:
        engine.stop(5)
    assert [r["status"] for r in runs(db_path)] == ["succeeded"]


def test_secrets_resolved_at_use_and_redacted_from_output(applied, engine_factory, db_path, monkeypatch):
    monkeypatch.setenv("API_TOKEN", "s3cr3t-canary-value")
    applied("""
        tasks:
          leak: {action: command.run, with: {argv: [sh, -c, 'echo token=$TOKEN; echo $TOKEN >&2; exit 1'], env: {TOKEN: "${env:API_TOKEN}"}}}
        events:
          e: {on: go, tasks: [leak]}
    """)
    engine = engine_factory()
    engine.emit("go")
    engine.run_until_idle()
    if not is_postgres(db_path):
        engine.store.conn.execute("PRAGMA wal_checkpoint(FULL)")
    (run,) = runs(db_path)
    assert json.loads(run["output"])["stdout"] == "token=********\n"
    raw = stored_bytes(db_path)
    assert b"s3cr3t-canary-value" not in raw


def test_an_invalid_event_is_refused_and_nothing_written(run_cli, db_path):
    from taskengine_core.store import open_store

    open_store(db_path).close()  # creates the database (a read or emit never does: test_db_safety.py)
    before = dump(db_path)
    bad_type = run_cli("emit", "not a type")
    assert bad_type.exit_code == 1
    assert bad_type.stderr == ("Error: invalid event: type: expected an event type such as user.login "
                               "(letters, digits, _ . : -); got a string 'not a type'\n")
    bad_json = run_cli("emit", "x", "--data", "{nope")
    assert bad_json.exit_code == 2 and "--data is not valid JSON" in bad_json.stderr
    bad_pair = run_cli("emit", "x", "novalue")
    assert bad_pair.exit_code == 2 and "bad event field 'novalue': expected KEY=VALUE" in bad_pair.stderr
    lone_surrogate = run_cli("emit", "x", "--data", '{"user": "\\ud800"}')
    assert lone_surrogate.exit_code == 1
    assert lone_surrogate.stderr == "Error: invalid event: data.user: not valid Unicode (a lone surrogate)\n"
    forged = run_cli("emit", "task.failed", "--source", "taskengine", "depth=99")
    assert forged.exit_code == 1
    assert forged.stderr == "Error: invalid event: source: 'taskengine' is reserved for the engine's own events\n"
    nan = run_cli("emit", "x", "--data", '{"v": NaN}')  # Python's json reads it; JSON has no NaN
    assert nan.exit_code == 2 and "--data is not valid JSON: NaN is not JSON" in nan.stderr
    huge = run_cli("emit", "x", "--data", '{"w": 1e999}')
    assert huge.exit_code == 2 and "--data is not valid JSON: 1e999 is too large for a number" in huge.stderr
    assert dump(db_path) == before


def test_nan_typed_as_a_field_value_is_text_and_the_api_refuses_a_float_nan(run_cli, db_path):
    from taskengine_core.engine import Engine
    from taskengine_core.errors import EventError
    from taskengine_core.store import open_store

    open_store(db_path).close()  # emit needs a database (only apply and run create one)
    event_id = run_cli("emit", "x", "v=NaN", "w=-Infinity", "z=1e999").stdout.strip()
    valid = "(data::jsonb IS NOT NULL)::int" if is_postgres(db_path) else "json_valid(data)"  # PG: a cast error
    stored = one(db_path, f"SELECT data, {valid} FROM events WHERE id = ?", (event_id,))
    assert stored == ('{"v":"NaN","w":"-Infinity","z":"1e999"}', 1)
    with pytest.raises(EventError, match=r"^invalid event: data\.a\.1: nan is not a JSON number"):
        Engine(db_path).emit("x", {"a": [1, float("nan")]})
    with pytest.raises(EventError, match="^invalid event: source: 'taskengine' is reserved"):
        Engine(db_path).emit("task.failed", {"depth": 99}, source="taskengine")
    assert one(db_path, "SELECT count(*) FROM events") == (1,)


def test_retention_setting_prunes_old_runs_automatically(applied, engine_factory, db_path):
    applied("""
        settings: {retention: 7d}
        tasks:
          t: {action: command.run, with: {argv: [echo]}}
        events:
          e: {on: go, tasks: [t]}
    """)
    clock = FakeClock()
    engine = engine_factory(clock=clock)
    engine.emit("go")
    engine.run_until_idle()
    assert len(runs(db_path)) == 1
    clock.advance(8 * 86400)  # past the retention, and past the hourly prune interval
    engine.emit("go")
    engine.run_until_idle()
    remaining = runs(db_path)
    assert len(remaining) == 1 and remaining[0]["created_at"].startswith("2026-03-09")


def test_templated_scalars_take_the_type_the_action_wants(applied, engine_factory, db_path):
    applied("""
        tasks:
          t: {action: command.run, with: {argv: [echo, "{{ event.data.n }}"], timeout: "{{ event.data.limit }}"}}
        events:
          e: {on: go, tasks: [t]}
    """)
    engine = engine_factory()
    engine.emit("go", {"n": 42, "limit": "5"})
    engine.run_until_idle()
    (run,) = runs(db_path)
    assert run["status"] == "succeeded", run["error"]
    assert json.loads(run["output"])["stdout"] == "42\n"


def test_event_data_cannot_name_a_secret(applied, engine_factory, db_path, monkeypatch):
    monkeypatch.setenv("MYSECRET", "hunter2xyz")
    monkeypatch.setenv("API_TOKEN", "tok-abc-123")
    manager = plugins_for_tests.manager()
    applied("""
        tasks:
          probe: {action: test.record, with: {msg: "{{ event.data.msg }}", token: "${env:API_TOKEN}-{{ event.data.n }}"}}
        events:
          e: {on: probe, tasks: [probe]}
    """, manager=manager)
    plugins_for_tests.CALLS.clear()
    engine = engine_factory(manager=manager)
    engine.emit("probe", {"msg": "${env:MYSECRET}", "n": 1})
    engine.run_until_idle()
    (call,) = plugins_for_tests.CALLS
    assert call["params"] == {"msg": "${env:MYSECRET}", "token": "tok-abc-123-1"}
    assert "hunter2xyz" not in json.dumps(runs(db_path))


def test_the_log_filter_removes_resolved_secrets():
    import logging

    from taskengine_core.secrets import Redactor, RedactingFilter

    redactor = Redactor()
    redactor.add("s3cret-value")
    record = logging.LogRecord("taskengine", logging.ERROR, __file__, 1, "token %s rejected", ("s3cret-value",), None)
    try:
        raise RuntimeError("boom with s3cret-value")
    except RuntimeError:
        import sys

        record.exc_info = sys.exc_info()
    assert RedactingFilter(redactor).filter(record)
    assert record.getMessage() == "token ******** rejected"
    assert "s3cret-value" not in record.exc_text and "boom with ********" in record.exc_text


def test_an_event_arriving_between_evaluation_passes_is_not_left_waiting(db_path, monkeypatch):
    """While events keep coming the loop evaluates at most every EVALUATION_GAP and emitting
    does not wake it meanwhile; the loop must still come back for them, not at its poll interval."""
    import taskengine_core.engine as engine_module

    monkeypatch.setattr(engine_module, "EVALUATION_GAP", 0.5)
    engine = Engine(db_path, poll_interval=60)

    def processed(event_id):
        return one(db_path, "SELECT processed_at FROM events WHERE id = ?", (event_id,))[0]

    engine.start()
    try:
        first = engine.emit("go")  # after a quiet spell: wakes the loop at once
        deadline = time.monotonic() + 10
        while not processed(first) and time.monotonic() < deadline:
            time.sleep(0.001)
        second = engine.emit("go")  # within the gap: no wake-up
        assert not processed(second)
        while not processed(second) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert processed(second)
        assert time.monotonic() < deadline
    finally:
        engine.stop(5)


def test_duplicates_within_one_batch_and_across_batches(db_path):
    from taskengine_core.events import Event

    engine = Engine(db_path)
    first = engine.emit("go", source="crm", id="7")
    ids = engine.emit_many([Event("go", source="crm", source_id="7"), Event("go", source="crm", source_id="8"),
                            Event("go", source="crm", source_id="8"), Event("go", source="other", source_id="8")])
    duplicate_of = {r["id"]: r["duplicate_of"] for r in rows(db_path, "SELECT id, duplicate_of FROM events")}
    assert [duplicate_of[i] for i in ids] == [first, None, ids[1], None]
    assert [d["event_id"] for d in decisions(db_path, decision="duplicate")] == [ids[0], ids[2]]


def test_event_data_survives_the_inbox_exactly(db_path):
    """Huge integers, floats, non-ASCII text and nesting come out of the inbox as they went in."""
    from taskengine_core.store.inbox import claim_waiting, read_events
    from taskengine_core.events import row_to_event

    data = {"big": 2**70, "neg": -(2**65), "f": 0.1, "text": "Zoë 東京 \u2028", "nested": {"a": [1, None, True]}}
    engine = Engine(db_path)
    event_id = engine.emit("go", data, source="s", id="x")
    with connection(db_path) as conn:
        waiting = claim_waiting(conn, 10)
        assert [event_type for _, event_type, _ in waiting] == ["go"]
        [row] = read_events(conn, [seq for seq, _, _ in waiting])
    event = row_to_event(row)
    assert event["data"] == data and type(event["data"]["big"]) is int
    assert (event["id"], event["type"], event["source"], event["source_id"]) == (event_id, "go", "s", "x")


def test_a_backlog_of_large_events_is_evaluated_a_slice_at_a_time(applied, db_path, monkeypatch):
    """One evaluation pass reads at most MAX_BATCH_BYTES of event data (here 2,500 bytes), so a
    backlog of large events never becomes one value too large for SQLite or memory."""
    import taskengine_core.evaluator as evaluator_module

    applied("""
        tasks:
          t: {action: command.run, with: {argv: [echo]}}
        events:
          e: {on: big, tasks: [t]}
    """)
    monkeypatch.setattr(evaluator_module, "MAX_BATCH_BYTES", 2500)
    engine = Engine(db_path)
    for n in range(5):
        engine.emit("big", {"blob": "x" * 990, "n": n})
    engine.emit("unheard", {"blob": "y" * 5000})  # no rule listens: its size does not count
    passes = []
    while evaluated := engine.evaluator.process_pending(engine.store, engine.runtime):
        passes.append(evaluated)
    assert passes == [2, 2, 2]
    assert len(runs(db_path)) == 5


def _one_run_in_flight(plugin_engine, db_path, seconds: float, **engine_kwargs) -> Engine:
    """An engine whose one run (an action that sleeps ``seconds``) is running."""
    engine = plugin_engine("""
        tasks:
          nap: {action: test.hang, with: {seconds: %s}}
        events:
          go: {on: go, tasks: [nap]}
    """ % seconds, **engine_kwargs)
    engine.emit("go")
    engine.step()
    assert [r["status"] for r in runs(db_path)] == ["running"]
    # a worker has taken it (else a stop now gives the claim back: the action never started)
    deadline = time.monotonic() + 10
    while not all(e.started for e in engine.executor._inflight.values()) and time.monotonic() < deadline:
        time.sleep(0.005)
    return engine


def test_a_run_cut_off_by_stop_ends_its_worker_quietly(plugin_engine, db_path):
    """A worker whose run the stop marked interrupted finishes later without an error (it used to
    look the task up among timed-out runs and die with a KeyError, printed at shutdown)."""
    import threading

    engine = _one_run_in_flight(plugin_engine, db_path, seconds=0.5, workers=1)
    failures = []
    previous, threading.excepthook = threading.excepthook, failures.append
    try:
        engine.executor.stop(0)
        (worker,) = engine.executor._threads
        worker.join(timeout=10)
    finally:
        threading.excepthook = previous
    assert not worker.is_alive() and failures == []
    (run,) = runs(db_path)
    assert run["status"] == "interrupted"


def test_a_finished_run_is_recorded_after_a_failed_write(plugin_engine, db_path):
    """Another process holds the write lock past the busy timeout just as a run finishes: the
    outcome is kept and written by the next step, not lost (the run would stay 'running').
    On PostgreSQL another session holds the run's row past the lock timeout."""
    from taskengine_core.errors import StoreError

    engine = plugin_engine("""
        tasks:
          t: {action: test.record, with: {x: 1}}
        events:
          go: {on: go, tasks: [t]}
    """, workers=1)
    engine.emit("go")
    engine.step()  # evaluates the event and claims the run; the worker runs it
    deadline = time.monotonic() + 10
    while engine.executor._done.empty() and time.monotonic() < deadline:
        time.sleep(0.01)
    if is_postgres(db_path):
        import psycopg

        engine.store.conn.execute("SET lock_timeout = 50")
        other = psycopg.connect(db_path, autocommit=True)
        other.execute("BEGIN")
        other.execute("SELECT id FROM runs FOR UPDATE")  # a long transaction elsewhere, say
        with pytest.raises(StoreError, match="lock timeout"):
            engine.executor.step(engine.runtime)
        other.execute("ROLLBACK")
        other.close()
    else:
        engine.store.conn.execute("PRAGMA busy_timeout = 50")
        import sqlite3

        other = sqlite3.connect(db_path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # a backup, say, or a sqlite3 shell
        with pytest.raises(StoreError, match="database is locked"):
            engine.executor.step(engine.runtime)
        other.execute("ROLLBACK")
    assert [r["status"] for r in runs(db_path)] == ["running"]
    engine.executor.step(engine.runtime)
    (run,) = runs(db_path)
    assert run["status"] == "succeeded" and json.loads(run["output"]) == {"ok": True, "params": {"x": 1}}
    assert [a["outcome"] for a in attempts(db_path, run["id"])] == ["succeeded"]


def test_an_error_with_a_lone_surrogate_is_recorded_and_other_runs_go_on(plugin_engine, db_path):
    """SQLite cannot bind a lone surrogate; such an error used to leave its run unrecorded and,
    retried with every later write, block all other runs too."""
    engine = plugin_engine("""
        tasks:
          bad: {action: test.undecodable}
          good: {action: test.record}
        events:
          go: {on: go, tasks: [bad, good]}
    """)
    engine.emit("go")
    engine.emit("go")
    engine.run_until_idle()
    by_task = sorted((r["task"], r["status"], r["error"]) for r in runs(db_path))
    error = "RuntimeError: cannot open caf\\udce9.txt"
    assert by_task == [("bad", "failed", error), ("bad", "failed", error),
                       ("good", "succeeded", None), ("good", "succeeded", None)]


def test_an_outcome_that_cannot_be_written_is_kept_stripped_once_then_dropped():
    from datetime import datetime, timezone

    from taskengine_core.errors import StoreError
    from taskengine_core.executor import _kept_after_failure
    from taskengine_core.model import TaskConfig
    from taskengine_core.runs import Claimed, Outcome

    now = datetime(2026, 3, 1, tzinfo=timezone.utc)
    task = TaskConfig(name="t", action="test.record", params={})
    outcome = Outcome(Claimed("r1", task, "manual", None, None, None, None, None, 1, 1, 0), "succeeded",
                      now, now, output={"big": "x"}, traceback="tb")
    locked = StoreError("database /x.db: database is locked")
    assert _kept_after_failure([outcome], locked) == [outcome]  # another process's lock: as it is
    (stripped,) = _kept_after_failure([outcome], ValueError("cannot bind"))
    assert (stripped.status, stripped.output, stripped.traceback, stripped.stripped) == ("succeeded", None, None, True)
    assert stripped.error == "the outcome could not be recorded (ValueError: cannot bind); was: succeeded"
    assert _kept_after_failure([stripped], ValueError("cannot bind")) == []


def test_a_second_engine_in_the_same_process_recovers_the_first_ones_runs(applied, engine_factory, db_path):
    """Executors of one process have owners of their own: one whose stop could not record a run
    must not leave it 'running' for the next engine started in the same process."""
    manager = plugins_for_tests.manager()
    applied("tasks:\n  t: {action: test.record}\n", manager=manager)
    first = engine_factory(manager=manager)
    first.executor.stop(0)
    execute(db_path, "INSERT INTO runs (id, task, status, trigger, not_before, created_at, attempt, max_attempts, "
                 "lease_owner, lease_expires) VALUES ('r1', 't', 'running', 'manual', '2026-01-01T00:00:00.000000Z', "
                 "'2026-01-01T00:00:00.000000Z', 1, 1, ?, '2026-01-01T00:01:00.000000Z')", (first.executor.owner,))
    second = engine_factory(manager=manager)
    assert second.executor.owner != first.executor.owner
    assert second.executor.recover(second.runtime) == ["r1"]


def test_stop_does_not_wait_the_busy_timeout_on_a_locked_database(plugin_engine, db_path, monkeypatch, caplog):
    """Another process holds the write lock while the engine stops: each write waits no longer
    than what is left of the grace (then FINAL_WRITE_WAIT), not SQLite's 30 s busy timeout.
    On PostgreSQL another session holds the run's row, and the wait is the lock_timeout (30 s)."""
    from taskengine_core import executor as executor_module

    monkeypatch.setattr(executor_module, "FINAL_WRITE_WAIT", 0.3)
    engine = _one_run_in_flight(plugin_engine, db_path, seconds=0.3)
    statements: list[str] = []
    if is_postgres(db_path):
        import psycopg

        other = psycopg.connect(db_path, autocommit=True)
        other.execute("BEGIN")
        other.execute("SELECT id FROM runs FOR UPDATE")
        execute = engine.store.conn.execute

        def traced(sql, params=None):
            statements.append(sql)
            return execute(sql, params)

        engine.store.conn.execute = traced
        engine.executor.stop(0.5)
        del engine.store.conn.execute
        other.execute("ROLLBACK")
        other.close()
        setting, now_set = "SET lock_timeout", ("30s",)
        now = engine.store.conn.execute("SHOW lock_timeout").fetchone()
    else:
        import sqlite3

        other = sqlite3.connect(db_path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        engine.store.conn.set_trace_callback(statements.append)
        engine.executor.stop(0.5)
        engine.store.conn.set_trace_callback(None)
        other.execute("ROLLBACK")
        setting, now_set = "PRAGMA busy_timeout", (30000,)
        now = engine.store.conn.execute("PRAGMA busy_timeout").fetchone()
    # (on SQLite a write also sets 0 while it tries for the lock itself, then the wait again)
    waits = [int(s.rsplit("=", 1)[1]) for s in statements if s.startswith(setting) and "=" in s]
    # every write at stop waited at most the grace (500 ms) or FINAL_WRITE_WAIT (300), not 30 s,
    # and the usual busy timeout came back after each
    short = [w for w in waits if w != 30000]
    assert short and all(w <= 500 for w in short) and short[-1] == 300 and waits[-1] == 30000
    assert "could not record 1 runs before stopping" in caplog.text
    assert tuple(now) == now_set
    assert [r["status"] for r in runs(db_path)] == ["running"]  # the next start recovers it


def test_a_duration_stored_before_the_limit_is_clamped_not_fatal(applied, engine_factory, db_path):
    """A rule applied before durations were capped at 100 years still loads: at the cap."""
    from taskengine_core.durations import MAX_SECONDS

    applied("""
        tasks:
          t: {action: command.run, with: {argv: [echo]}}
        events:
          once-ever: {on: go, throttle: {window: 1d}, tasks: [t]}
    """)
    if is_postgres(db_path):
        execute(db_path, """UPDATE event_rules SET spec = jsonb_set(spec::jsonb, '{throttle,window}', '"9999999w"')::text""")
    else:
        execute(db_path, """UPDATE event_rules SET spec = json_set(spec, '$.throttle.window', '9999999w')""")
    engine = engine_factory()
    (rule,) = [r.payload for r in engine.runtime.rules.match({"type": "go", "data": {}, "source": "x"})]
    assert rule.throttle_window == MAX_SECONDS
    engine.emit("go")
    engine.emit("go")
    engine.run_until_idle()
    assert [d["decision"] for d in decisions(db_path)] == ["matched", "throttled"]
