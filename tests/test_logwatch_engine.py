"""The logwatch source as a user runs it: `taskengine run --rules FILE` on a watched file in a
temporary directory, lines appended, the file rotated, the engine stopped and started again."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from taskengine_core.engine import Engine

INJECTION = ("Dec  4 13:30:24 host sshd[912]: Invalid user x Accepted publickey for alice from "
             "198.51.100.1 port 1 ssh2 from 127.0.0.1 port 35382")
ACCEPTED = "Dec  4 13:30:23 host sshd[911]: Accepted publickey for {user} from 127.0.0.1 port {port} ssh2"


def logwatch_events(db_path, type_=None):
    if not os.path.exists(db_path):
        return []
    conn = sqlite3.connect(db_path)
    try:
        rows = conn.execute("SELECT type, source_id, data, duplicate_of FROM events "
                            "WHERE source = 'logwatch' ORDER BY seq").fetchall()
    except sqlite3.OperationalError:  # the engine has not created its tables yet
        return []
    finally:
        conn.close()
    return [{"type": t, "id": i, "data": json.loads(d), "duplicate_of": dup} for t, i, d, dup in rows
            if type_ is None or t == type_]


def wait_for(predicate, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out waiting")


def append(path, text):
    with open(path, "a") as f:
        f.write(text)


class RunningEngine:
    """`taskengine run --rules ...` in a child process, stopped with SIGTERM."""

    def __init__(self, rules, tmp_path):
        self.log = open(tmp_path / "engine.log", "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "taskengine_core", "run", "--rules", str(rules),
                                      "--grace", "2"], stdout=self.log, stderr=self.log)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        assert self.proc.wait(30) == 0
        self.log.close()


@pytest.fixture
def engines(tmp_path):
    started = []

    def start(rules):
        engine = RunningEngine(rules, tmp_path)
        started.append(engine)
        return engine

    yield start
    for engine in started:
        if engine.proc.poll() is None:
            engine.proc.kill()
            engine.proc.wait()


def wait_started(db_path, state_key, timeout=30):
    """Until the source has stored its first position (it follows the file from then on)."""
    def stored():
        if not os.path.exists(db_path):
            return False
        conn = sqlite3.connect(db_path)
        try:
            return conn.execute("SELECT 1 FROM plugin_state WHERE scope = 'source:logwatch' AND key = ?",
                                (state_key,)).fetchone()
        except sqlite3.OperationalError:
            return False
        finally:
            conn.close()
    wait_for(stored, timeout)


def test_done_when_login_rotation_restart_and_injection(tmp_path, write_rules, db_path, engines):
    log = tmp_path / "auth.log"
    log.write_text("Dec  4 13:00:00 host sshd[1]: Accepted publickey for old from 127.0.0.1 port 1 ssh2\n")
    rules = write_rules(f"""
        settings:
          logwatch:
            files:
              - path: {log}
                patterns: [sshd]
        """)
    engine = engines(rules)
    wait_started(db_path, f"file:{log}")
    append(log, ACCEPTED.format(user="alice", port=5001) + "\n")
    login = wait_for(lambda: logwatch_events(db_path, "user.login"))
    assert login[0]["data"] == {
        "user": "alice", "host": "127.0.0.1", "port": 5001, "method": "publickey", "program": "sshd",
        "pid": 911, "hostname": "host", "time": "Dec  4 13:30:23", "source": str(log),
        "line": ACCEPTED.format(user="alice", port=5001)}  # the line before the start was not read

    append(log, INJECTION + "\n")
    failed = wait_for(lambda: logwatch_events(db_path, "user.login_failed"))
    assert failed[0]["data"]["user"] == "x Accepted publickey for alice from 198.51.100.1 port 1 ssh2"
    assert failed[0]["data"]["host"] == "127.0.0.1"

    # rotate while running, and again while stopped; append on both sides of the restart
    append(log, ACCEPTED.format(user="bob", port=5002) + "\n")
    os.rename(log, tmp_path / "auth.log.1")
    log.write_text(ACCEPTED.format(user="carol", port=5003) + "\n")
    wait_for(lambda: len(logwatch_events(db_path, "user.login")) == 3)
    engine.stop()
    append(log, ACCEPTED.format(user="dave", port=5004) + "\n")
    os.rename(tmp_path / "auth.log.1", tmp_path / "auth.log.2")
    os.rename(log, tmp_path / "auth.log.1")
    log.write_text(ACCEPTED.format(user="erin", port=5005) + "\n")
    engine = engines(rules)
    wait_for(lambda: len(logwatch_events(db_path, "user.login")) >= 5)
    append(log, ACCEPTED.format(user="frank", port=5006) + "\n")
    wait_for(lambda: len(logwatch_events(db_path, "user.login")) >= 6)
    engine.stop()

    logins = logwatch_events(db_path, "user.login")
    assert [e["data"]["user"] for e in logins] == ["alice", "bob", "carol", "dave", "erin", "frank"]
    assert all(e["duplicate_of"] is None for e in logins)
    assert len({e["id"] for e in logins}) == 6
    assert not [e for e in logwatch_events(db_path) if e["data"].get("user") == "alice"
                and e["type"] == "user.login" and e["data"]["host"] != "127.0.0.1"]


def test_validate_names_a_bad_regex_with_file_and_line(run_cli, write_rules, tmp_path):
    rules = write_rules(f"""
        settings:
          logwatch:
            files:
              - path: {tmp_path}/sync.log
                rules:
                  - match: '^(?P<time>\\S+) ERROR sync (?P<sync>\\S+) failed: (?P<error>.*)$'
                    event: sync.failed
                  - match: '^(?P<time>\\S+) WARN (unclosed$'
                    event: sync.warning
                  - match: '^(?P<who>\\S+) logged in$'
                    event: user.login
                  - match: '^(a)\\1$'
                    event: sync.repeat
                  - match: '^(?P<line>.*)$'
                    event: sync.any
        """)
    result = run_cli("validate", rules)
    assert result.exit_code == 1
    out = result.output + (result.stderr if result.stderr_bytes is not None else "")
    assert f"{rules}:8:" in out and "missing )" in out  # the unclosed group, at its line
    assert f"{rules}:10:" in out and "needs the named group" in out and "(?P<user>...)" in out
    assert f"{rules}:12:" in out and "backreferences" in out
    assert f"{rules}:14:" in out and "'line' is reserved" in out
    assert f"{rules}:6:" not in out  # the good rule


def test_apply_refuses_a_bad_regex_and_changes_nothing(run_cli, write_rules, tmp_path, db_path):
    from tests.conftest import dump_db

    rules = write_rules(f"""
        settings:
          logwatch:
            files:
              - path: {tmp_path}/x.log
                rules: [{{match: 'x(?=y)', event: x.seen}}]
        """)
    before = dump_db(db_path)
    result = run_cli("apply", rules)
    assert result.exit_code == 1
    assert "does not compile" in result.stderr
    assert dump_db(db_path) == before


def test_a_bad_file_or_a_hostile_line_does_not_stall_the_other_files(tmp_path, applied, db_path):
    good, directory, slow = tmp_path / "good.log", tmp_path / "adir", tmp_path / "slow.log"
    good.write_text("")
    directory.mkdir()  # opens, but every read fails
    slow.write_text("")
    applied(f"""
        settings:
          logwatch:
            poll: 0.05
            files:
              - path: {directory}
                patterns: [sshd]
              - path: {slow}
                rules: [{{match: '(a+)+b', event: slow.matched}}]
              - path: {good}
                rules: [{{match: 'ok (?P<n>\\d+)', event: good.seen}}]
        """)
    engine = Engine(db_path)
    engine.start()
    try:
        wait_started(db_path, f"file:{good}")
        wait_started(db_path, f"file:{slow}")
        # catastrophic for a backtracking engine: 2^n paths; RE2 answers in linear time
        append(slow, "a" * 5000 + "\n")
        append(good, "ok 1\n")
        seen = wait_for(lambda: logwatch_events(db_path, "good.seen"))
        assert seen[0]["data"]["n"] == "1"
        append(slow, "a" * 20 + "b\n")
        wait_for(lambda: logwatch_events(db_path, "slow.matched"))
    finally:
        engine.stop(grace=1)


def test_an_event_rule_fires_a_task_when_alice_logs_in(tmp_path, applied, db_path):
    """alice logs in → user.login → a task you can observe (vm.power comes later)."""
    log, marker = tmp_path / "auth.log", tmp_path / "powered-on"
    log.write_text("")
    applied(f"""
        settings:
          logwatch:
            poll: 0.05
            files: [{{path: {log}, patterns: [sshd]}}]
        tasks:
          alice-vm-on:
            action: command.run
            with: {{argv: [touch, {marker}]}}
        events:
          alice-login:
            on: user.login
            when: {{data.user: alice}}
            tasks: [alice-vm-on]
        """)
    engine = Engine(db_path)
    engine.start()
    try:
        wait_started(db_path, f"file:{log}")
        append(log, INJECTION + "\n")
        append(log, ACCEPTED.format(user="bob", port=1) + "\n")
        wait_for(lambda: len(logwatch_events(db_path)) == 2)
        time.sleep(0.5)
        assert not marker.exists()  # neither the injection nor bob
        append(log, ACCEPTED.format(user="alice", port=2) + "\n")
        wait_for(marker.exists)
    finally:
        engine.stop(grace=1)


def test_a_killed_engine_loses_and_repeats_nothing(tmp_path, write_rules, db_path, engines):
    """SIGKILL while a burst is being read: after the restart every line is one event; lines
    read again (their events committed, their position not yet stored) are recorded as
    duplicates that run nothing."""
    log = tmp_path / "auth.log"
    log.write_text("")
    rules = write_rules(f"""
        settings:
          logwatch:
            files: [{{path: {log}, patterns: [sshd]}}]
        """)
    engine = engines(rules)
    wait_started(db_path, f"file:{log}")
    total = 20000
    append(log, "".join(ACCEPTED.format(user=f"u{i}", port=i % 65535 + 1) + "\n" for i in range(total)))
    wait_for(lambda: logwatch_events(db_path), timeout=60)
    engine.proc.kill()  # SIGKILL: no chance to store anything more
    engine.proc.wait()
    engine.log.close()
    engine = engines(rules)
    wait_for(lambda: len([e for e in logwatch_events(db_path) if e["duplicate_of"] is None]) >= total, timeout=120)
    engine.stop()
    events = logwatch_events(db_path)
    firsts = [e for e in events if e["duplicate_of"] is None]
    assert [e["data"]["user"] for e in firsts] == [f"u{i}" for i in range(total)]
    assert len({e["id"] for e in firsts}) == total


def test_a_cut_line_still_matches_and_says_it_was_cut(tmp_path, applied, db_path):
    log = tmp_path / "app.log"
    log.write_text("")
    applied(f"""
        settings:
          logwatch:
            poll: 0.05
            files: [{{path: {log}, max_line: 256, rules: [{{match: 'ERROR (?P<what>\\w+).*', event: app.error}}]}}]
        """)
    engine = Engine(db_path)
    engine.start()
    try:
        wait_started(db_path, f"file:{log}")
        append(log, "ERROR disk " + "x" * 1000 + "\nERROR net short\n")
        events = wait_for(lambda: len(logwatch_events(db_path)) == 2 and logwatch_events(db_path))
    finally:
        engine.stop(grace=1)
    assert [(e["data"]["what"], len(e["data"]["line"]), e["data"].get("line_cut")) for e in events] == [
        ("disk", 256, True), ("net", 15, None)]
    assert engine.source_state("logwatch").get(f"file:{log}")["cut"] == 1


def test_a_change_wakes_the_source_before_its_next_poll(tmp_path, applied, db_path):
    """inotify on the file's directory wakes the source: with a 10 s poll, an appended line is
    an event long before the poll would have looked."""
    log = tmp_path / "auth.log"
    log.write_text("")
    applied(f"""
        settings:
          logwatch:
            poll: 10
            files: [{{path: {log}, patterns: [sshd]}}]
        """)
    engine = Engine(db_path)
    engine.start()
    try:
        wait_started(db_path, f"file:{log}")
        time.sleep(0.2)  # the source is now waiting out its 10 s poll
        append(log, ACCEPTED.format(user="alice", port=1) + "\n")
        wait_for(lambda: logwatch_events(db_path, "user.login"), timeout=5)
    finally:
        engine.stop(grace=1)


def test_one_event_the_inbox_refuses_does_not_hold_up_the_others(db_path, caplog):
    from taskengine_core.context import SourceContext
    from taskengine_core.events import Event
    from taskengine_logwatch.source import _emit

    engine = Engine(db_path)
    ctx = SourceContext(name="logwatch", settings={}, emit=None, emit_many=lambda events: engine.emit_many(
        [Event(e["type"], e["data"], source="logwatch", source_id=e["id"]) for e in events]))
    events = [{"type": "a.b", "data": {"n": 1}, "id": "f:0:0"},
              {"type": "a.b", "data": {"n": float("nan")}, "id": "f:0:10"},
              {"type": "a.b", "data": {"n": 3}, "id": "f:0:20"}]
    with caplog.at_level("WARNING", logger="taskengine.logwatch"):
        _emit(ctx, events, "/var/log/x.log")
    assert [e["data"]["n"] for e in logwatch_events(db_path)] == [1, 3]
    assert "/var/log/x.log: line at f:0:10 dropped" in caplog.text
    engine.store.close()


def test_validate_refuses_rule_data_that_is_not_json(run_cli, write_rules, tmp_path):
    rules = write_rules(f"""
        settings:
          logwatch:
            files:
              - path: {tmp_path}/x.log
                rules: [{{match: 'x', event: a.b, data: {{v: .nan}}}}]
        """)
    result = run_cli("validate", rules)
    assert result.exit_code == 1
    assert f"{rules}:5:" in result.stderr + result.output and "NaN and infinity" in result.stderr + result.output
