"""The examples folder as shipped: it validates, every file is listed in its README, and no
example installs updates or changes a machine without someone asking."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.test_email_support import smtp_server  # noqa: F401

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def test_validate_examples_passes_as_shipped(run_cli):
    result = run_cli("validate", str(EXAMPLES))
    assert result.exit_code == 0, result.output + result.stderr
    assert result.stderr.startswith("ok: ")


def test_every_example_file_is_described_in_the_readme():
    readme = (EXAMPLES / "README.md").read_text(encoding="utf-8")
    for path in sorted(EXAMPLES.glob("*.yaml")):
        assert f"`{path.name}`" in readme, f"examples/README.md does not describe {path.name}"


def test_only_settings_yaml_holds_settings():
    """Settings may be defined once across the files of one rules directory: the scenario
    files leave theirs to settings.yaml, so any of them can be copied next to it."""
    for path in sorted(EXAMPLES.glob("*.yaml")):
        if path.name != "settings.yaml":
            assert "settings" not in (yaml.safe_load(path.read_text()) or {}), path.name


def test_no_example_installs_updates_on_its_own():
    for path in sorted(EXAMPLES.glob("*.yaml")):
        doc = yaml.safe_load(path.read_text()) or {}
        triggered = {t for rule in (doc.get("events") or {}).values() for t in rule.get("tasks", [])}
        for name, task in (doc.get("tasks") or {}).items():
            if task["action"] == "updates.install":
                assert task.get("enabled") is False and not task.get("schedules"), name
                assert name not in triggered, name


def test_mail_on_task_failure_end_to_end(tmp_path, db_path, smtp_server):
    """The shipped file, settings pointing at a local SMTP server, and a task that fails."""
    import shutil

    from taskengine_core.apply import apply_config
    from taskengine_core.engine import Engine
    from taskengine_core.plugins import get_plugin_manager
    from taskengine_core.rules.validate import load_config
    from taskengine_core.store import Store
    from tests.test_email_support import SENDER

    server = smtp_server()
    rules = tmp_path / "example-rules"
    rules.mkdir()
    shutil.copy(EXAMPLES / "mail-on-task-failure.yaml", rules)
    (rules / "settings.yaml").write_text(yaml.safe_dump({"settings": {"email": {
        "host": "127.0.0.1", "port": server.port, "security": "none", "sender": SENDER}}}))
    (rules / "failing.yaml").write_text(
        "tasks:\n  nightly-backup: {action: command.run, with: {argv: [\"false\"]}}\n")
    store = Store(db_path)
    apply_config(store, load_config(sorted(rules.iterdir()), get_plugin_manager().registry()))
    store.close()
    engine = Engine(db_path)
    engine.executor.start()
    try:
        engine.queue_run("nightly-backup")
        engine.run_until_idle(timeout=60)
    finally:
        engine.executor.stop(0)
    [mail] = server.mailbox.delivered
    assert mail.rcpt_tos == ["srvadmins@example.com"]
    assert mail.message["Subject"] == "taskengine: nightly-backup failed"
    assert "command exited with code 1" in mail.message.get_content()
