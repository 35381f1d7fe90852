"""``engine.start_process``: a plugin's work in a child process the engine supervises
(:mod:`taskengine_core.plugin_processes`, :mod:`taskengine_core.plugin_process_main`).

Real child processes running entries written to a temporary module; their log goes to file
descriptor 2, which ``capfd`` reads."""

from __future__ import annotations

import logging
import os
import signal
import sys
import textwrap
import threading
import time

import pytest

from taskengine_core import plugin_processes
from taskengine_core.plugin_processes import PluginProcess
from taskengine_core.store import open_store
from tests.test_webhook_support import wait_until

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux processes")

ENTRIES = '''
import logging, os, sys, time

OUT = os.environ["TE_CHILD_OUT"]


def note(text):
    with open(OUT, "a") as f:
        f.write(text + "\\n")


class Work:
    def __init__(self, info, stop_takes=0.0):
        self.stop_takes = stop_takes
        note(f"started {os.getpid()} deliveries={info.deliveries is not None} "
             f"settings={sorted(info.settings)}")

    def wake(self, hint):
        note(f"wake {hint}")

    def stop(self):
        time.sleep(self.stop_takes)
        note("stopped")


def recorder(info):
    return Work(info)


def stubborn(info):
    return Work(info, stop_takes=60)


def broken(info):
    raise RuntimeError("this plugin cannot start here")


def telling(info):
    secret = info.resolve("${env:TE_CHILD_SECRET}")
    logging.getLogger("te.child").warning("connecting with %s", secret)
    return Work(info)
'''


def child_module(tmp_path, monkeypatch, module: str, source: str, out_env: str):
    """``module`` (``source``) importable by children, whose import path is the engine's; the
    file that environment variable ``out_env`` names, empty, for what they write."""
    folder = tmp_path / module
    folder.mkdir()
    (folder / f"{module}.py").write_text(textwrap.dedent(source))
    monkeypatch.syspath_prepend(str(folder))
    out = tmp_path / f"{module}.out"
    out.write_text("")
    monkeypatch.setenv(out_env, str(out))
    return out


@pytest.fixture
def entries(tmp_path, monkeypatch, db_path):
    """A module of entries importable by the children; their notes go to a file."""
    out = child_module(tmp_path, monkeypatch, "te_child_entries", ENTRIES, "TE_CHILD_OUT")
    open_store(db_path).close()  # a migrated database, as an engine has
    made: list[PluginProcess] = []

    def start(entry: str, **kwargs) -> PluginProcess:
        kwargs.setdefault("name", "test-child")
        process = PluginProcess(f"te_child_entries:{entry}", database=str(db_path), **kwargs)
        process.start()
        made.append(process)
        return process

    def notes() -> list[str]:
        return out.read_text().splitlines()

    start.notes = notes
    yield start
    for process in made:
        process.stop()


def test_the_child_gets_its_engine_info_and_the_wakes_then_stops_at_end_of_input(entries):
    child = entries("recorder")
    wait_until(lambda: entries.notes(), what="the child to start")
    started = entries.notes()[0]
    assert started == f"started {child.pid} deliveries=True settings=[]"
    child.wake("hook")
    child.wake(None)
    wait_until(lambda: {"wake hook", "wake None"} <= set(entries.notes()), what="the wakes")
    pid = child.pid
    child.stop()
    assert entries.notes()[-1] == "stopped"
    assert child.last_exit == 0 and child.starts == 1
    assert not os.path.exists(f"/proc/{pid}")


def test_sigterm_stops_the_childs_work_cleanly(entries, monkeypatch):
    monkeypatch.setattr(plugin_processes, "FIRST_PAUSE", 60.0)  # no restart within the test
    child = entries("recorder")
    wait_until(lambda: entries.notes(), what="the child to start")
    os.kill(child.pid, signal.SIGTERM)
    wait_until(lambda: child.last_exit is not None, what="the child to exit")
    assert child.last_exit == 0 and entries.notes()[-1] == "stopped"


def test_ctrl_c_is_the_engines_to_act_on(entries):
    child = entries("recorder")
    wait_until(lambda: entries.notes(), what="the child to start")
    assert os.getpgid(child.pid) != os.getpgid(0)  # a terminal's Ctrl-C does not reach it
    os.kill(child.pid, signal.SIGINT)  # and one sent to it anyway is ignored
    child.wake("still-there")
    wait_until(lambda: "wake still-there" in entries.notes(), what="the child to go on")
    assert child.last_exit is None


def test_a_child_that_cannot_start_is_logged_and_started_again(entries, monkeypatch, caplog, capfd):
    monkeypatch.setattr(plugin_processes, "FIRST_PAUSE", 0.2)
    with caplog.at_level(logging.WARNING, logger="taskengine.processes"):
        child = entries("broken")
        wait_until(lambda: child.starts >= 2, timeout=20, what="a second start")
    assert child.last_exit == 2
    assert "test-child (pid " in caplog.text
    assert "exited with code 2 while the engine runs; starting it again in 0.2s" in caplog.text
    err = capfd.readouterr().err
    assert "test-child could not start te_child_entries:broken" in err
    assert "RuntimeError: this plugin cannot start here" in err


def test_a_child_that_does_not_stop_within_the_grace_is_killed(entries, caplog):
    child = entries("stubborn", grace=0.5)
    wait_until(lambda: entries.notes(), what="the child to start")
    pid = child.pid
    with caplog.at_level(logging.WARNING, logger="taskengine.processes"):
        child.stop()
    assert f"test-child (pid {pid}) did not stop within 0.5s of being asked: killed" in caplog.text
    assert child.last_exit == -signal.SIGKILL and "stopped" not in entries.notes()


def test_the_childs_log_never_shows_a_resolved_secret(entries, monkeypatch, capfd):
    monkeypatch.setenv("TE_CHILD_SECRET", "s3cret-value-of-the-child")
    entries("telling")
    wait_until(lambda: entries.notes(), what="the child to start")
    err = capfd.readouterr().err
    assert "connecting with ********" in err
    assert "s3cret-value-of-the-child" not in err
    assert "[test-child pid " in err  # the child's lines say whose they are


def test_a_percent_sign_in_the_processs_name_is_shown_as_it_is(entries, monkeypatch, capfd):
    """The name is part of the child's log format: a '%' in it made every log line fail to
    format (logging printed a traceback instead of the line)."""
    monkeypatch.setenv("TE_CHILD_SECRET", "unused")
    entries("telling", name="sync-100%")
    wait_until(lambda: entries.notes(), what="the child to start")
    err = capfd.readouterr().err
    assert "[sync-100% pid " in err and "connecting with" in err
    assert "Traceback" not in err


def test_an_entry_that_is_not_module_colon_function_is_refused():
    with pytest.raises(ValueError, match="entry 'no_colon': expected 'module:function'"):
        PluginProcess("no_colon", name="x", database="unused")


def test_the_engine_stops_the_processes_a_plugin_left_running(entries, db_path):
    from taskengine_core.engine import Engine

    engine = Engine(db_path)
    engine.start()
    child = engine.info.start_process("te_child_entries:recorder", name="left-running")
    wait_until(lambda: entries.notes(), what="the child to start")
    pid = child.pid
    engine.stop(grace=1)
    assert child.last_exit == 0 and entries.notes()[-1] == "stopped"
    assert not os.path.exists(f"/proc/{pid}")


def test_healthz_shows_the_processes_and_fails_while_one_stays_down(entries, db_path, monkeypatch):
    from taskengine_core.engine import Engine
    from taskengine_core.health import HealthCheck

    monkeypatch.setattr(plugin_processes, "FIRST_PAUSE", 30.0)  # down for the rest of the test
    engine = Engine(db_path)
    engine.start()
    try:
        working = engine.info.start_process("te_child_entries:recorder", name="working")
        engine.info.start_process("te_child_entries:broken", name="failing")
        wait_until(lambda: entries.notes(), what="the working child to start")
        health = HealthCheck(engine, stall_after=0.3)
        wait_until(lambda: health.report()[0] == 503, what="the failing child to count as down")
        status, body = health.report()
        assert {"name": "working", "pid": working.pid, "restarts": 0, "last_exit": None} in body["processes"]
        [reason] = body["reasons"]
        assert reason.startswith("failing has not been running for ")
        assert reason.endswith("s (last exit code 2): see the engine's log")
    finally:
        engine.stop(grace=1)


_popen_in: dict = {}  # thread name -> what to do when that thread starts a child (audit hook)


def _on_popen(event: str, args) -> None:
    if event == "subprocess.Popen":
        action = _popen_in.pop(threading.current_thread().name, None)
        if action is not None:
            action()


def test_a_stop_while_a_child_is_being_started_again_leaves_no_child_running(entries, monkeypatch):
    """stop() lands while the watcher is starting a new child (inside Popen, caught with an
    audit hook): that child must not run the entry, and none may be left running."""
    monkeypatch.setattr(plugin_processes, "FIRST_PAUSE", 0.05)
    if not _popen_in.get("hooked"):
        sys.addaudithook(_on_popen)
        _popen_in["hooked"] = True
    child = entries("stubborn", grace=0.5)
    wait_until(lambda: entries.notes(), what="the child to start")
    first = child.pid
    stopper = threading.Thread(target=child.stop)

    def stop_now() -> None:  # in the watcher's Popen: stop() runs and sees the dead child
        stopper.start()
        wait_until(lambda: child.stopped, what="stop() to begin")

    _popen_in["taskengine-test-child-watch"] = stop_now
    os.kill(first, signal.SIGKILL)
    wait_until(lambda: not stopper.is_alive() and stopper.ident is not None, timeout=30,
               what="stop() to return")
    assert child.pid is None  # no child runs once stop() has returned
    assert [n for n in entries.notes() if n.startswith("started")] == [f"started {first} "
                                                                       "deliveries=True settings=[]"]


def test_wakes_reach_a_child_whose_pipe_has_a_descriptor_above_1023(entries):
    """An engine with many connections open (LimitNOFILE raised) gives its children pipes
    numbered past select()'s 1024: a full pipe must still be waited on, not end the wake-ups."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 2048:
        if hard != resource.RLIM_INFINITY and hard < 2048:
            pytest.skip(f"the open-file limit ({hard}) leaves no descriptor past 1023 free")
        resource.setrlimit(resource.RLIMIT_NOFILE, (2048, hard))
    fillers = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    try:
        child = entries("recorder")
        assert child._proc.stdin.fileno() >= 1024
        wait_until(lambda: entries.notes(), what="the child to start")
        os.kill(child.pid, signal.SIGSTOP)  # it reads nothing: the pipe fills up
        try:
            child.wake("x" * 100_000)
            time.sleep(0.5)  # the writer meets the full pipe
        finally:
            os.kill(child.pid, signal.SIGCONT)
        wait_until(lambda: f"wake {'x' * 100_000}" in entries.notes(), what="the long wake")
        child.wake("after")
        wait_until(lambda: "wake after" in entries.notes(), what="the next wake")
    finally:
        for fd in fillers:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_no_process_is_started_once_the_engine_has_stopped(entries, db_path):
    from taskengine_core.engine import Engine

    engine = Engine(db_path)
    engine.start()
    engine.stop(grace=1)
    with pytest.raises(RuntimeError, match="late: the engine is stopping; no process is started now"):
        engine.info.start_process("te_child_entries:recorder", name="late")
    assert engine.plugin_processes.live() == [] and entries.notes() == []
