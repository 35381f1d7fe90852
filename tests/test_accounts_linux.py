"""user.disable / user.enable with the linux backend: the real `usermod --root DIR` on a copy of
passwd/shadow in the test's directory, never this machine's own accounts."""

from __future__ import annotations

import json
import os
import shutil

import pytest

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("usermod"),
    reason="usermod --root needs root (it chroots) and shadow-utils")

PASSWD = """root:x:0:0:root:/root:/bin/bash
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
alice:x:1000:1000::/home/alice:/bin/bash
bob:x:1001:1001::/home/bob:/bin/sh
"""
SHADOW = """root:$6$r$rootHash:19000:0:99999:7:::
daemon:*:19000:0:99999:7:::
alice:$6$salt$aliceHash:19000:0:99999:7:::
bob:!:19000:0:99999:7:::
"""
GROUP = "root:x:0:\ndaemon:x:1:\nalice:x:1000:\nbob:x:1001:\ntemporary:x:1500:bob\n"
GSHADOW = "root:*::\ndaemon:*::\nalice:!::\nbob:!::\ntemporary:!::bob\n"


def make_root(directory):
    etc = directory / "etc"
    etc.mkdir(parents=True)
    for name, text in (("passwd", PASSWD), ("shadow", SHADOW), ("group", GROUP), ("gshadow", GSHADOW)):
        (etc / name).write_text(text)
    (etc / "shadow").chmod(0o640)
    return directory


def shadow_row(root, user):
    for line in (root / "etc" / "shadow").read_text().splitlines():
        if line.split(":")[0] == user:
            return line.split(":")
    raise AssertionError(user)


@pytest.fixture
def accounts(tmp_path, write_rules, run_cli):
    root = make_root(tmp_path / "root")
    rules = write_rules(f"""
        settings:
          user: {{backend: linux, root: {root}}}
        tasks:
          disable: {{action: user.disable, with: {{user: alice}}}}
          enable: {{action: user.enable, with: {{user: alice}}}}
          disable-system: {{action: user.disable, with: {{user: daemon, allow_system: true}}}}
        """)
    assert run_cli("apply", rules).exit_code == 0
    machine = os.stat("/etc/shadow")

    def run(task, *params):
        result = run_cli("tasks", "run", task, "--json", *[a for p in params for a in ("--param", p)])
        return result.exit_code, json.loads(result.stdout)

    yield root, run
    after = os.stat("/etc/shadow")  # the machine's own accounts were never touched
    assert (after.st_ino, after.st_mtime_ns) == (machine.st_ino, machine.st_mtime_ns)


def test_disable_locks_and_expires_then_reports_no_change(accounts):
    root, run = accounts
    code, run_ = run("disable")
    assert code == 0, run_["error"]
    assert run_["output"]["changed"] is True and run_["output"]["uid"] == 1000
    row = shadow_row(root, "alice")
    assert row[1] == "!$6$salt$aliceHash" and row[7] == "1"
    code, again = run("disable")
    assert code == 0 and again["output"]["changed"] is False
    assert shadow_row(root, "alice") == row


def test_enable_unlocks_and_clears_the_expiry(accounts):
    root, run = accounts
    run("disable")
    code, run_ = run("enable")
    assert code == 0 and run_["output"]["changed"] is True and run_["output"]["enabled"] is True
    row = shadow_row(root, "alice")
    assert row[1] == "$6$salt$aliceHash" and row[7] == ""
    code, again = run("enable")
    assert code == 0 and again["output"]["changed"] is False


def test_an_account_without_password_is_disabled_by_expiry_and_enabled_again(accounts):
    root, run = accounts
    code, run_ = run("disable", "user=bob")
    assert code == 0 and run_["output"]["changed"] is True
    assert shadow_row(root, "bob")[7] == "1"
    code, run_ = run("enable", "user=bob")
    assert code == 0 and run_["output"]["enabled"] is True and shadow_row(root, "bob")[7] == ""


@pytest.mark.parametrize("user", ["root", "daemon"])
def test_system_accounts_are_refused_unless_allowed(accounts, user):
    root, run = accounts
    before = (root / "etc" / "shadow").read_bytes()
    code, run_ = run("disable", f"user={user}")
    assert code == 1
    assert f"refusing to disable system account {user!r}" in run_["error"] and "allow_system: true" in run_["error"]
    assert (root / "etc" / "shadow").read_bytes() == before
    if user == "daemon":
        code, run_ = run("disable-system")
        assert code == 0 and shadow_row(root, "daemon")[7] == "1"


@pytest.mark.parametrize("user", ["-o", "--root=/", "alice bob", "alice;id", "x\nroot", "../alice", "a" * 40])
def test_names_that_are_not_user_names_are_refused_before_usermod_runs(accounts, user):
    root, run = accounts
    before = (root / "etc" / "shadow").read_bytes()
    code, run_ = run("disable", f"user={user}")
    assert code == 1 and "refusing user name" in run_["error"] and "not a valid linux user name" in run_["error"]
    assert (root / "etc" / "shadow").read_bytes() == before


def test_unknown_user_and_missing_root_say_what_to_check(accounts, tmp_path, write_rules, run_cli):
    root, run = accounts
    code, run_ = run("disable", "user=nobody2")
    assert code == 1 and f"no user 'nobody2' in {root}/etc/passwd" in run_["error"]
    rules = write_rules(f"""
        settings:
          user: {{root: {tmp_path}/nowhere}}
        tasks:
          disable: {{action: user.disable, with: {{user: alice}}}}
        """, name="other.yaml")
    assert run_cli("apply", rules).exit_code == 0
    code, run_ = run("disable")
    assert code == 1 and "etc/passwd does not exist; check settings.user.root" in run_["error"]
