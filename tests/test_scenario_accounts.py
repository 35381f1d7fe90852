"""Scenario: a temporary user is created → user.created → a run due in 30 days → user.disable
locks the account. Reads the shipped examples/disable-temp-user.yaml and changes only its
settings (the log's path, the group file, the accounts' root directory)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml


from taskengine_core.engine import Engine
from tests.conftest import FakeClock
from tests.examples_support import load_shipped, shipped_settings
from tests.test_accounts_linux import make_root, shadow_row
from tests.test_engine import runs
from tests.test_logwatch_engine import append, logwatch_events, wait_for, wait_started

EXAMPLE = Path(__file__).parent.parent / "examples" / "disable-temp-user.yaml"
pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("useradd"),
                                reason="useradd/usermod --root need root (they chroot)")


def test_a_temporary_user_is_disabled_thirty_days_after_creation(tmp_path, db_path, run_cli):
    root = make_root(tmp_path / "root")
    for args in (["-g", "temporary", "tmp1"], ["-g", "bob", "perm1"]):  # the real tool, on the copy
        subprocess.run(["useradd", "--root", str(root), "-M", *args], check=True, capture_output=True)
    log = tmp_path / "auth.log"
    log.write_text("")
    rules = load_shipped(EXAMPLE)
    rules["settings"] = shipped_settings("logwatch", "user")
    rules["settings"]["logwatch"]["files"] = [f for f in rules["settings"]["logwatch"]["files"] if "useradd" in f.get("patterns", [])]
    rules["settings"]["logwatch"]["files"][0]["path"] = str(log)
    rules["settings"]["logwatch"]["group_file"] = str(root / "etc" / "group")
    rules["settings"]["logwatch"]["poll"] = 0.05
    rules["settings"]["user"]["root"] = str(root)
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rules))
    assert run_cli("apply", tmp_path / "rules.yaml").exit_code == 0

    clock = FakeClock()
    engine = Engine(db_path, clock=clock, poll_interval=0.05)
    engine.start()
    try:
        wait_started(db_path, f"file:{log}")
        uid = {row.split(":")[0]: row.split(":")[2] for row in (root / "etc/passwd").read_text().splitlines()}
        append(log, f"Dec  4 13:30:23 host useradd[77]: new user: name=tmp1, UID={uid['tmp1']}, GID=1500, "
                    "home=/home/tmp1, shell=/bin/sh, from=/dev/pts/0\n"
                    f"Dec  4 13:30:24 host useradd[78]: new user: name=perm1, UID={uid['perm1']}, GID=1001, "
                    "home=/home/perm1, shell=/bin/sh, from=/dev/pts/0\n")
        created = wait_for(lambda: len(logwatch_events(db_path, "user.created")) == 2
                           and logwatch_events(db_path, "user.created"))
        assert [(e["data"]["user"], e["data"].get("group")) for e in created] == [
            ("tmp1", "temporary"), ("perm1", "bob")]
        (run,) = wait_for(lambda: runs(db_path))
        assert run["task"] == "disable-temp-user" and run["status"] == "pending"
        assert run["not_before"] == "2026-03-31T12:00:00.000000Z"  # the fake clock's now + 30 days
        before = (root / "etc" / "shadow").read_bytes()
        clock.advance(29 * 86400)
        engine.wake.set()
        time.sleep(0.5)  # the loop steps several times: nothing is due yet
        assert runs(db_path)[0]["status"] == "pending" and (root / "etc" / "shadow").read_bytes() == before
        clock.advance(86400)
        engine.wake.set()
        (run,) = wait_for(lambda: [r for r in runs(db_path) if r["status"] == "succeeded"])
    finally:
        engine.stop(grace=2)
    assert json.loads(run["output"])["changed"] is True
    row = shadow_row(root, "tmp1")
    assert row[1].startswith("!") and row[7] == "1"
    assert shadow_row(root, "perm1")[7] == ""  # the permanent user is untouched
