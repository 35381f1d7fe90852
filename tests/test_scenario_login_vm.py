"""Reference scenario 2, end to end: alice logs in over ssh (a line appended to a watched auth
log) → the logwatch source emits user.login → the shipped examples/power-on-vm-at-login.yaml
powers gpu-alice on, through vm.power on libvirt's test driver. The example is used as shipped;
its settings (in examples/settings.yaml) are pointed at the test's log file and node file."""

from __future__ import annotations

import json

import pytest

from taskengine_core.engine import Engine
from tests.examples_support import EXAMPLES, load_shipped, shipped_settings
from tests.test_engine import runs
from tests.test_logwatch_engine import append, logwatch_events, wait_for, wait_started
from tests.test_vm_fixtures import lab_node, state_of

ACCEPTED = "Dec  4 13:30:23 host sshd[4242]: Accepted publickey for alice from 192.0.2.7 port 50522 ssh2: ED25519 SHA256:abc\n"
INJECTION = ("Dec  4 13:31:02 host sshd[4250]: Invalid user x Accepted publickey for alice from 198.51.100.1 "
             "port 1 ssh2 from 203.0.113.9 port 35382\n")


def test_alice_logging_in_powers_her_vm_on(tmp_path, db_path, run_cli):
    libvirt = pytest.importorskip("libvirt")
    uri = lab_node(tmp_path)  # gpu-alice is shut off
    log = tmp_path / "auth.log"
    log.write_text("")
    settings = shipped_settings("logwatch", "vm")
    settings["logwatch"]["files"] = [{**f, "path": str(log)} for f in settings["logwatch"]["files"]
                                     if "sshd" in f.get("patterns", [])]
    settings["logwatch"]["poll"] = 0.05
    settings["vm"] = {"hosts": {"lab": {"type": "libvirt", "uri": uri}}}
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "power-on-vm-at-login.yaml").write_text((EXAMPLES / "power-on-vm-at-login.yaml").read_text())
    (rules / "settings.yaml").write_text(json.dumps({"settings": settings}))
    assert load_shipped(rules / "power-on-vm-at-login.yaml")["events"]["alice-login"]["on"] == "user.login"
    applied = run_cli("apply", rules)
    assert applied.exit_code == 0, applied.stderr

    engine = Engine(db_path, poll_interval=0.05)
    engine.start()
    try:
        wait_started(db_path, f"file:{log}")
        append(log, INJECTION)  # an attacker's user name that spells alice's login: not a login
        wait_for(lambda: logwatch_events(db_path, "user.login_failed"))
        assert logwatch_events(db_path, "user.login") == []
        assert state_of(uri, "gpu-alice") == libvirt.VIR_DOMAIN_SHUTOFF
        append(log, ACCEPTED)
        (login,) = wait_for(lambda: logwatch_events(db_path, "user.login"))
        assert login["data"]["user"] == "alice" and login["data"]["host"] == "192.0.2.7"
        (run,) = wait_for(lambda: [r for r in runs(db_path, "gpu-vm-on") if r["status"] == "succeeded"])
        output = json.loads(run["output"])
        assert state_of(uri, "gpu-alice") == libvirt.VIR_DOMAIN_RUNNING
        assert json.dumps(output).count('"changed": true') == 1
    finally:
        engine.stop(grace=5)
