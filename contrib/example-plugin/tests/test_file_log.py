"""file.append against a real file system, through taskengine's real plugin manager and engine
(the ``taskengine`` fixture of taskengine's testing kit)."""

from __future__ import annotations

import importlib.metadata

import pytest

import taskengine_file_log
from taskengine_core.context import ActionContext
from taskengine_core.errors import ActionError, RuleFileError


def ctx(**settings) -> ActionContext:
    return ActionContext(run_id="r1", task="t", settings=settings)


def test_register_actions_registers_file_append_not_idempotent(taskengine):
    item = taskengine.registry.actions["file.append"]
    assert item.idempotent is False
    assert set(item.schema["required"]) == {"path", "line"}
    assert "file" in taskengine.registry.settings


def test_appends_one_line_per_call(tmp_path):
    target = tmp_path / "out.log"
    taskengine_file_log.append_line({"path": str(target), "line": "first"}, ctx())
    out = taskengine_file_log.append_line({"path": str(target), "line": "two\nlines"}, ctx())
    assert target.read_text() == "first\ntwo\\nlines\n"
    assert out == {"path": str(target), "bytes": len("two\\nlines\n")}


def test_relative_paths_resolve_against_the_directory_and_cannot_leave_it(tmp_path):
    taskengine_file_log.append_line({"path": "a.log", "line": "x"}, ctx(directory=str(tmp_path)))
    assert (tmp_path / "a.log").read_text() == "x\n"
    for escape in ("../evil.log", "/etc/evil.log", "sub/../../evil.log"):
        with pytest.raises(ActionError, match="outside") as info:
            taskengine_file_log.append_line({"path": escape, "line": "x"}, ctx(directory=str(tmp_path)))
        assert info.value.retryable is False
    assert not (tmp_path.parent / "evil.log").exists()


def test_relative_path_without_directory_is_refused(tmp_path):
    with pytest.raises(ActionError, match="relative"):
        taskengine_file_log.append_line({"path": "a.log", "line": "x"}, ctx())


def test_missing_directory_fails_without_retry_unless_create_dirs(tmp_path):
    target = tmp_path / "new" / "deeper" / "out.log"
    with pytest.raises(ActionError, match="does not exist") as info:
        taskengine_file_log.append_line({"path": str(target), "line": "x"}, ctx())
    assert info.value.retryable is False
    taskengine_file_log.append_line({"path": str(target), "line": "x", "create_dirs": True}, ctx())
    assert target.read_text() == "x\n"


def test_rule_file_validation_names_bad_parameters(taskengine):
    with pytest.raises(RuleFileError) as caught:
        taskengine.apply("tasks:\n  t: {action: file.append, with: {path: /tmp/x.log}}\n")
    problems = caught.value.problems
    assert [p.path for p in problems] == ["tasks.t.with"]
    assert "line" in problems[0].message


def test_an_event_appends_a_rendered_line_through_the_engine(taskengine, tmp_path):
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    taskengine.apply(f"""
        settings:
          file: {{directory: "{log_dir}"}}
        tasks:
          audit-login:
            action: file.append
            with: {{path: "{{{{ event.data.host }}}}.log", line: "{{{{ event.data.user }}}} logged in"}}
        events:
          login: {{on: user.login, tasks: [audit-login]}}
    """)
    [ok] = taskengine.emit_and_run("user.login", user="alice", host="web1")
    [refused] = taskengine.emit_and_run("user.login", user="bob", host="../escaped")  # must not escape
    assert (log_dir / "web1.log").read_text() == "alice logged in\n"
    assert not (tmp_path / "escaped.log").exists()
    assert ok["status"] == "succeeded" and refused["status"] == "failed"
    assert "outside" in refused["error"]


def test_installed_package_is_found_through_its_entry_point(taskengine):
    if not [ep for ep in importlib.metadata.entry_points(group="taskengine") if ep.name == "file"]:
        pytest.skip("taskengine-file-log is not installed (pip install -e .)")
    item = taskengine.registry.actions["file.append"]
    assert item.plugin.distribution == "taskengine-file-log"
