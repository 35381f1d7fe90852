"""The reference scenarios of the updates plugin, end to end, from the shipped example files:
each test loads the file as shipped and changes only settings (an SMTP server, a local apt
repository with an isolating APT_CONFIG)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import yaml

from taskengine_core.apply import apply_config
from taskengine_core.engine import Engine
from taskengine_core.plugins import get_plugin_manager
from taskengine_core.rules.validate import load_config
from taskengine_core.store import Store
from tests.conftest import FakeClock
from tests.test_email_support import SENDER, smtp_server  # noqa: F401
from tests.test_webhook_support import query
from tests.test_updates_support import apt_repo, needs_apt, system_apt_snapshot  # noqa: F401

pytestmark = needs_apt
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load_example(tmp_path, db_path, name: str, settings: dict) -> None:
    """The shipped file unchanged, next to a settings file of the test's own (in place of
    examples/settings.yaml), applied like `taskengine apply`."""
    rules = tmp_path / "example-rules"
    rules.mkdir()
    shutil.copy(EXAMPLES / name, rules / name)
    (rules / "settings.yaml").write_text(yaml.safe_dump({"settings": settings}))
    store = Store(db_path)
    try:
        apply_config(store, load_config(sorted(rules.iterdir()), get_plugin_manager().registry()))
    finally:
        store.close()


def rows(db_path, sql, *params):
    return query(db_path, sql, params)


def test_scenario_1_email_when_a_system_update_completes(tmp_path, db_path, apt_repo, smtp_server):
    before = system_apt_snapshot()
    repo = apt_repo({"te-demo": "1.0", "te-tools": "2.0"},
                    {"te-demo": ["1.0", "1.1"], "te-tools": ["2.0", "2.0.1"]})
    server = smtp_server()
    load_example(tmp_path, db_path, "update-completed-email.yaml", {
        "email": {"host": "127.0.0.1", "port": server.port, "security": "none", "sender": SENDER},
        "updates": {"apt": {"config": str(repo.config)}},
    })
    engine = Engine(db_path)
    engine.executor.start()
    try:
        engine.queue_run("install-updates", actor="test")  # the example never installs on its own
        engine.run_until_idle(timeout=120)
    finally:
        engine.executor.stop(0)
    runs = {r["task"]: r["status"] for r in rows(db_path, "SELECT task, status FROM runs")}
    assert runs == {"install-updates": "succeeded", "mail-update-completed": "succeeded"}
    assert repo.installed_version("te-demo") == "1.1" and repo.installed_version("te-tools") == "2.0.1"
    [event] = rows(db_path, "SELECT source, data FROM events WHERE type = 'update.completed'")
    assert event["source"] == "updates" and json.loads(event["data"])["result"] == "succeeded"
    [mail] = server.mailbox.delivered
    assert mail.rcpt_tos == ["srvadmins@example.com"]
    assert mail.message["Subject"] == "Update succeeded: 2 package(s) from apt"
    body = mail.message.get_content()
    assert "te-demo 1.0 -> 1.1" in body and "te-tools 2.0 -> 2.0.1" in body
    assert system_apt_snapshot() == before


def test_scenario_4_check_and_download_every_saturday_at_17(tmp_path, db_path, apt_repo):
    before = system_apt_snapshot()
    repo = apt_repo({"te-demo": "1.0"}, {"te-demo": ["1.0", "1.1"]})
    load_example(tmp_path, db_path, "weekly-updates.yaml",
                 {"updates": {"apt": {"config": str(repo.config)}}})
    shipped = yaml.safe_load((EXAMPLES / "weekly-updates.yaml").read_text())
    window = shipped["schedules"]["updates-window"]
    assert (window["days"], window["at"], window["timezone"]) == (["sat"], "17:00", "America/Chicago")
    # Saturday 2026-11-28 16:59:59 in Chicago (CST, UTC-6)
    clock = FakeClock("2026-11-28T22:59:59+00:00")
    engine = Engine(db_path, clock=clock)
    engine.executor.start()
    try:
        engine.run_until_idle(timeout=60)
        assert rows(db_path, "SELECT * FROM runs") == []
        clock.advance(1)
        engine.run_until_idle(timeout=120)
    finally:
        engine.executor.stop(0)
    runs = rows(db_path, "SELECT task, status, trigger FROM runs ORDER BY task")
    assert [(r["task"], r["status"]) for r in runs] == [
        ("check-updates", "succeeded"), ("download-updates", "succeeded")]
    [check] = rows(db_path, "SELECT output FROM runs WHERE task = 'check-updates'")
    output = json.loads(check["output"])  # the run's output lists what is pending
    assert [(p["name"], p["installed"], p["candidate"]) for p in output["packages"]] == [
        ("te-demo", "1.0", "1.1")]
    assert output["packages"][0]["size"] == (repo.pool / "te-demo_1.1_all.deb").stat().st_size
    [available] = rows(db_path, "SELECT data FROM events WHERE type = 'update.available'")
    data = json.loads(available["data"])
    assert data["source"] == "apt" and data["count"] == 1
    assert data["packages"][0] | {"size": None} == {"name": "te-demo", "installed": "1.0",
                                                    "candidate": "1.1", "size": None}
    assert [p.name for p in repo.archives.glob("*.deb")] == ["te-demo_1.1_all.deb"]
    assert len(rows(db_path, "SELECT id FROM events WHERE type = 'update.downloaded'")) == 1
    assert repo.installed_version("te-demo") == "1.0"  # downloaded, never installed
    assert system_apt_snapshot() == before
