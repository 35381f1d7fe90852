"""The built-in ``command.run`` action, run against real processes."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
import tracemalloc

import pytest
from jsonschema import Draft202012Validator

import taskengine_command
from taskengine_command import process
from taskengine_core.context import ActionContext
from taskengine_core.errors import ActionError

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="checks processes through /proc"
)
PY = sys.executable


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("TASKENGINE_HOME", str(tmp_path / "home"))


def ctx(**kwargs) -> ActionContext:
    return ActionContext(run_id="run-1", task="cmd", **kwargs)


def run(params: dict, context: ActionContext | None = None) -> dict:
    return taskengine_command.run_command(params, context or ctx())


def fails(params: dict, context: ActionContext | None = None) -> ActionError:
    with pytest.raises(ActionError) as info:
        run(params, context)
    return info.value


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            state = fh.read().rpartition(")")[2].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")  # a zombie is dead; only its parent has not reaped it


def wait_gone(pid: int, timeout: float = 3.0) -> bool:
    until = time.monotonic() + timeout
    while time.monotonic() < until:
        if not alive(pid):
            return True
        time.sleep(0.02)
    return False


def zombie_children() -> list[int]:
    me, found = os.getpid(), []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rpartition(")")[2].split()
        except OSError:
            continue
        if fields[0] == "Z" and int(fields[1]) == me:
            found.append(int(entry))
    return found


# --- registration and discovery -------------------------------------------------------------


def test_register_actions():
    calls = []
    taskengine_command.register_actions(register=lambda *a, **k: calls.append((a, k)))
    [(args, kwargs)] = calls
    assert args == ("command.run", taskengine_command.run_command)
    assert kwargs["idempotent"] is False
    Draft202012Validator.check_schema(kwargs["schema"])
    assert kwargs["schema"]["additionalProperties"] is False


def test_discovered_through_the_real_entry_point():
    from taskengine_core.plugins import get_plugin_manager

    item = get_plugin_manager().registry().actions["command.run"]
    assert item.plugin.distribution == "taskengine"
    assert item.idempotent is False
    assert item.func({"argv": ["echo", "via", "registry"]}, ctx())["stdout"] == "via registry\n"


@pytest.mark.parametrize(
    "params, ok",
    [
        ({"argv": ["echo"]}, True),
        ({"shell": "echo hi"}, True),
        ({}, False),
        ({"argv": ["echo"], "shell": "echo"}, False),
        ({"argv": []}, False),
        ({"argv": "echo hi"}, False),
        ({"argv": ["echo"], "nosuch": 1}, False),
        ({"argv": ["echo"], "env": {"A": 1}}, False),
        ({"argv": ["echo"], "timeout": 0}, False),
        ({"argv": ["echo"], "ok_exit_codes": []}, False),
    ],
)
def test_schema(params, ok):
    assert Draft202012Validator(taskengine_command.SCHEMA).is_valid(params) is ok


@pytest.mark.parametrize("params", [{}, {"argv": ["echo"], "shell": "echo"}])
def test_exactly_one_of_argv_or_shell(params):
    error = fails(params)
    assert str(error) == "command.run: give exactly one of 'argv' or 'shell'"
    assert error.retryable is False


def test_bad_parameter_names_its_path():
    error = fails({"argv": ["echo", 5]})
    assert str(error).startswith("command.run: argv/1: 5 is not of type 'string'")


# --- running ----------------------------------------------------------------------------------


def test_result_shape_is_json_serialisable():
    result = run({"argv": ["echo", "hello"]})
    assert set(result) == {"exit_code", "stdout", "stderr", "truncated", "duration"}
    assert result["exit_code"] == 0 and result["stdout"] == "hello\n" and result["stderr"] == ""
    assert result["truncated"] is False and isinstance(result["duration"], float) and result["duration"] >= 0
    assert json.loads(json.dumps(result)) == result


def test_argv_is_not_run_through_a_shell():
    result = run({"argv": ["echo", "a;", "echo", "b", "$HOME", "|", "*"]})
    assert result["stdout"] == "a; echo b $HOME | *\n"


def test_shell_runs_only_when_asked():
    assert run({"shell": "echo a; echo b >&2; echo $((1+2))"})["stdout"] == "a\n3\n"
    assert run({"shell": "echo a; echo b >&2"})["stderr"] == "b\n"


def test_env_is_added_to_the_inherited_environment(monkeypatch):
    monkeypatch.setenv("TE_INHERITED", "from-engine")
    code = "import os; print(os.environ.get('TE_INHERITED'), os.environ.get('TE_ADDED'))"
    result = run({"argv": [PY, "-c", code], "env": {"TE_ADDED": "from-task"}})
    assert result["stdout"] == "from-engine from-task\n"


def test_inherit_env_false_replaces_the_environment(monkeypatch):
    monkeypatch.setenv("TE_INHERITED", "from-engine")
    code = "import os; print(sorted(k for k in os.environ if k.startswith('TE_')))"
    result = run({"argv": [PY, "-c", code], "env": {"TE_ONLY": "1"}, "inherit_env": False})
    assert result["stdout"] == "['TE_ONLY']\n"


def test_cwd(tmp_path):
    assert run({"argv": ["pwd"], "cwd": str(tmp_path)})["stdout"] == f"{tmp_path}\n"


def test_missing_cwd_is_not_retryable(tmp_path):
    error = fails({"argv": ["pwd"], "cwd": str(tmp_path / "gone")})
    assert "working directory not found" in str(error) and error.retryable is False


def test_stdin_is_written_and_closed():
    assert run({"argv": ["cat"], "stdin": "hello\nwörld"})["stdout"] == "hello\nwörld"


def test_without_stdin_the_child_reads_eof_not_the_engines_stdin():
    code = "import sys; print(repr(sys.stdin.read()))"
    assert run({"argv": [PY, "-c", code], "timeout": 5})["stdout"] == "''\n"


def test_large_stdin_to_a_child_that_writes_while_reading():
    data = "0123456789abcdef\n" * 200_000  # 3.4 MB: more than any pipe buffer both ways
    code = "import sys\nfor line in sys.stdin: sys.stdout.write(line)"
    result = run({"argv": [PY, "-c", code], "stdin": data, "max_output": 17, "timeout": 20})
    assert result["stdout"].endswith("\n0123456789abcdef\n") and result["truncated"]


def test_child_that_ignores_its_stdin_does_not_hang_us():
    result = run({"argv": ["true"], "stdin": "x" * 5_000_000, "timeout": 10})
    assert result["exit_code"] == 0


def test_non_ok_exit_code_raises_retryable_with_output():
    error = fails({"shell": "echo out; echo err >&2; exit 3"})
    assert str(error) == "command exited with code 3"
    assert error.retryable is True
    assert error.output["exit_code"] == 3
    assert error.output["stdout"] == "out\n" and error.output["stderr"] == "err\n"


def test_ok_exit_codes():
    assert run({"shell": "exit 3", "ok_exit_codes": [0, 3]})["exit_code"] == 3
    assert str(fails({"argv": ["true"], "ok_exit_codes": [1]})) == "command exited with code 0"


def test_missing_executable_is_not_retryable():
    error = fails({"argv": ["nosuch"]})
    assert str(error) == "command not found: 'nosuch'"
    assert error.retryable is False and error.output is None


def test_not_executable(tmp_path):
    script = tmp_path / "script.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o644)
    error = fails({"argv": [str(script)]})
    assert "permission denied" in str(error) and error.retryable is False


def test_invalid_utf8_is_replaced():
    code = "import sys; sys.stdout.buffer.write(b'ok \\xff end')"
    assert run({"argv": [PY, "-c", code]})["stdout"] == "ok \ufffd end"


# --- bounded output ---------------------------------------------------------------------------


def test_ten_megabytes_on_both_streams_keep_only_the_tail_in_bounded_memory():
    code = (
        "import sys\n"
        "for i in range(10):\n"
        "    sys.stdout.write('o' * 1_000_000); sys.stderr.write('e' * 1_000_000)\n"
        "sys.stdout.write('STDOUT-END'); sys.stderr.write('STDERR-END')\n"
    )
    tracemalloc.start()
    try:
        result = run({"argv": [PY, "-c", code], "max_output": 1000, "timeout": 30})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2_000_000, f"kept {peak} bytes while draining 20 MB"
    assert result["truncated"] is True
    for name, end, letter in (("stdout", "STDOUT-END", "o"), ("stderr", "STDERR-END", "e")):
        marker, _, kept = result[name].partition("\n")
        assert marker == "[... 9999010 bytes truncated ...]"
        assert kept == letter * 990 + end


def test_default_max_output_is_64_kib():
    code = "import sys; sys.stdout.write('a' * 100_000 + 'Z')"
    result = run({"argv": [PY, "-c", code]})
    assert result["truncated"] is True
    assert result["stdout"].split("\n", 1)[1] == "a" * (64 * 1024 - 1) + "Z"


def test_output_at_the_limit_is_not_truncated():
    result = run({"argv": [PY, "-c", "print('x' * 9)"], "max_output": 10})
    assert result == {**result, "stdout": "x" * 9 + "\n", "truncated": False}


def test_max_output_zero_keeps_nothing():
    result = run({"argv": ["echo", "hello"], "max_output": 0})
    assert result["stdout"] == "[... 6 bytes truncated ...]\n" and result["truncated"] is True


def test_truncation_does_not_start_with_half_a_character():
    code = "import sys; sys.stdout.write('é' * 100)"  # 2 bytes each
    result = run({"argv": [PY, "-c", code], "max_output": 7})
    assert result["stdout"] == "[... 194 bytes truncated ...]\n" + "é" * 3


# --- timeouts and cancellation kill the whole process group ---------------------------------


def test_timeout_kills_the_process_group_including_the_grandchild():
    error = fails({"shell": "sleep 100 & echo $!; sleep 100", "timeout": 1})
    assert str(error) == "command timed out after 1.0s; process group killed"
    assert error.retryable is True
    assert error.output["exit_code"] == -signal.SIGTERM
    grandchild = int(error.output["stdout"])
    assert wait_gone(grandchild), f"grandchild {grandchild} survived the timeout"


def test_a_group_ignoring_sigterm_gets_sigkill(monkeypatch):
    monkeypatch.setattr(process, "KILL_GRACE", 0.3)
    started = time.monotonic()
    error = fails({"shell": "trap '' TERM; sleep 100 & echo $!; sleep 100", "timeout": 0.5})
    assert time.monotonic() - started >= 0.8  # the grace after SIGTERM was given
    assert error.output["exit_code"] == -signal.SIGKILL
    assert wait_gone(int(error.output["stdout"]))


def test_the_tasks_deadline_wins_when_it_is_sooner():
    context = ctx(timeout=0.5)
    error = fails({"argv": ["sleep", "100"], "timeout": 30}, context)
    assert str(error) == (
        "command timed out after 0.5s (the task's time limit); process group killed"
    )


def test_the_action_timeout_wins_when_it_is_sooner():
    error = fails({"argv": ["sleep", "100"], "timeout": 0.3}, ctx(timeout=30))
    assert str(error) == "command timed out after 0.3s; process group killed"


def test_a_passed_task_deadline_does_not_start_the_command():
    context = ctx(timeout=1, started_monotonic=time.monotonic() - 5)
    error = fails({"argv": ["echo", "no"]}, context)
    assert "not started" in str(error) and error.output is None


def test_cancel_kills_the_process_group():
    context = ctx()
    threading.Timer(0.3, context.cancelled.set).start()
    error = fails({"shell": "sleep 100 & echo $!; sleep 100"}, context)
    assert str(error) == "command cancelled; process group killed"
    assert error.retryable is False
    assert wait_gone(int(error.output["stdout"]))


def test_an_already_cancelled_run_does_not_start():
    context = ctx()
    context.cancelled.set()
    assert "cancelled" in str(fails({"argv": ["echo"]}, context))


def test_output_before_the_timeout_is_kept():
    error = fails({"shell": "echo before; sleep 100", "timeout": 0.5})
    assert error.output["stdout"] == "before\n"


def test_leftover_children_holding_the_output_open_are_killed(monkeypatch):
    monkeypatch.setattr(process, "LINGER", 0.2)
    result = run({"shell": "sleep 100 & echo $!", "timeout": 10})
    assert result["exit_code"] == 0  # returned although a child held the output open
    assert "processes it started kept its output open; they were killed" in result["stderr"]
    assert wait_gone(int(result["stdout"]))


def test_detached_children_with_their_own_output_are_left_alone(monkeypatch):
    monkeypatch.setattr(process, "LINGER", 3600)  # waiting for leftovers would now take an hour
    done: list[dict] = []
    runner = threading.Thread(target=lambda: done.append(
        run({"shell": "sleep 3600 >/dev/null 2>&1 & echo $!", "timeout": 7200})), daemon=True)
    runner.start()
    runner.join(60)  # a deadline for a hang, not a speed bound: a wrong wait is an hour
    assert done, "the action waited for a child that holds none of its output"
    pid = int(done[0]["stdout"])
    try:
        assert alive(pid) and "kept its output open" not in done[0]["stderr"]
    finally:
        os.kill(pid, signal.SIGKILL)


def test_no_zombies_or_open_pipes_are_left_behind():
    fds_before = len(os.listdir("/proc/self/fd"))
    for params in (
        {"argv": ["echo", "x"]},
        {"shell": "exit 2"},
        {"shell": "sleep 100 & sleep 100", "timeout": 0.2},
        {"argv": ["cat"], "stdin": "abc"},
    ):
        try:
            run(params)
        except ActionError:
            pass
    assert zombie_children() == []
    assert len(os.listdir("/proc/self/fd")) == fds_before
