"""End to end, as a user would: the shipped examples with only their ``settings`` pointed at
libvirt's test driver or the VergeOS contract server.

The issue's "Done when": ``taskengine run`` with the login example, ``taskengine emit
user.login user=alice`` powers gpu-alice on, a second login reports "already on" and succeeds,
the ``vm.started`` event is in the inbox and ``logs explain`` shows it, and ``tasks run
lab-off`` on a guest that ignores ACPI forces it off after its timeout.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_vm_fixtures import VergeOS, lab_node, make_tls, wait_for

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
ROOT = EXAMPLES.parent


def example_with_settings(name: str, settings: dict, directory: Path) -> Path:
    """A rules directory: the shipped example unchanged, beside a settings file of the test's
    own in place of examples/settings.yaml (where the examples keep their settings)."""
    rules = directory / "rules"
    rules.mkdir(exist_ok=True)
    (rules / name).write_text((EXAMPLES / name).read_text())
    (rules / "settings.yaml").write_text(f"settings: {json.dumps(settings)}\n")
    return rules


def cli(*args, check=True) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "taskengine_core", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    if check and done.returncode != 0:
        raise AssertionError(f"taskengine {' '.join(map(str, args))} exited {done.returncode}:\n{done.stderr}")
    return done


def query(db: str, sql: str, *params):
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def test_done_when_login_powers_gpu_alice_on_and_lab_off_forces_the_stubborn_guest(tmp_path, db_path):
    pytest.importorskip("libvirt")
    uri = lab_node(tmp_path)  # gpu-alice off; lab-1 and lab-2 (ignores ACPI) on, tagged lab
    rules = example_with_settings("power-on-vm-at-login.yaml",
                                  {"vm": {"hosts": {"lab": {"type": "libvirt", "uri": uri}}}}, tmp_path)
    cli("validate", rules)
    db = os.environ["TASKENGINE_DB"]
    engine = subprocess.Popen([sys.executable, "-m", "taskengine_core", "run", "--rules", rules],
                              cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: Path(db).exists() and query(
            db, "SELECT value FROM plugin_state WHERE scope = 'source:vm' AND key = 'host/lab'"))
        first = cli("emit", "user.login", "user=alice").stdout.strip()
        wait_for(lambda: query(db, "SELECT status FROM runs WHERE event_id = ? AND status = 'succeeded'", first))
        second = cli("emit", "user.login", "user=alice").stdout.strip()
        wait_for(lambda: query(db, "SELECT status FROM runs WHERE event_id = ? AND status = 'succeeded'", second))
        outputs = [json.loads(o) for (o,) in query(
            db, "SELECT output FROM runs WHERE task = 'gpu-vm-on' ORDER BY created_at")]
        assert [o["targets"][0]["note"] for o in outputs] == ["powered on", "already on"]
        assert [o["targets"][0]["changed"] for o in outputs] == [True, False]
        started = wait_for(lambda: query(
            db, "SELECT id, data FROM events WHERE type = 'vm.started' AND source = 'vm'"))
        assert len(started) == 1
        event_id, data = started[0]
        assert json.loads(data)["vm"] == "gpu-alice" and json.loads(data)["reason"] == "booted"
        explained = cli("logs", "explain", event_id).stdout
        assert f"event {event_id}  type vm.started  source vm" in explained
        listed = json.loads(cli("logs", "list", "--task", "gpu-vm-on", "--json").stdout)
        assert [r["status"] for r in listed] == ["succeeded", "succeeded"]
    finally:
        engine.send_signal(signal.SIGTERM)
        _, stderr = engine.communicate(timeout=60)
    assert engine.returncode == 0, stderr
    assert "Traceback" not in stderr

    # a new process: the test driver starts from the node file again (lab-2 on, ignoring ACPI)
    done = cli("tasks", "run", "lab-off", "--param", "timeout=1s", "--json")
    run = json.loads(done.stdout)
    assert run["status"] == "succeeded"
    by_vm = {t["vm"]: t for t in run["output"]["targets"]}
    assert by_vm["lab-2"]["forced"] is True and by_vm["lab-2"]["after"] == "off"
    assert by_vm["lab-2"]["note"] == "forced off after 1s (the guest ignored the shutdown)"
    assert by_vm["lab-1"]["note"] == "shut down"


def test_tenant_off_on_its_date_then_the_task_retires_and_gpu_vms_off_on_friday(tmp_path, db_path,
                                                                              monkeypatch):
    from taskengine_core.engine import Engine
    from tests.conftest import FakeClock

    tls = make_tls(tmp_path)
    with VergeOS(tls) as verge:
        verge.add_tenant(7, "acme", running=True)
        verge.add_vm(1, "gpu-alice", running=True, tags=["gpu"])
        verge.add_vm(2, "gpu-bob", running=True, tags=["gpu"])
        verge.add_vm(3, "web", running=True)
        monkeypatch.setenv("VERGE_API_KEY", verge.token)
        rules = example_with_settings("power-off-tenant-on-date.yaml", {"vm": {"default": "verge", "hosts": {
            "verge": {"type": "vergeos", "url": verge.url, "ca_file": tls[0],
                      "auth": {"type": "bearer", "token": "${env:VERGE_API_KEY}"}}}}}, tmp_path)
        cli("apply", rules)
        clock = FakeClock("2026-12-31T16:59:00+00:00")  # 17:59 in Berlin, a Thursday
        engine = Engine(db_path, clock=clock, workers=1)
        engine.executor.start()
        try:
            engine.run_until_idle()
            assert verge.tenants[7]["running"] is True
            clock.advance(60)  # 18:00 Berlin: the contract ends
            engine.run_until_idle(timeout=60)
            assert verge.tenants[7]["running"] is False
            assert verge.count("POST", "/api/v4/tenant_actions") == 1
            retired = query(os.environ["TASKENGINE_DB"],
                            "SELECT retired_at FROM tasks WHERE name = 'tenant-acme-off'")
            assert retired[0][0] is not None
            clock.advance(24 * 3600)  # Friday 2027-01-01 17:00 UTC = 11:00 Chicago
            engine.run_until_idle(timeout=60)
            assert verge.vms[1]["running"] is True
            clock.advance(7 * 3600)  # 18:00 in Chicago
            engine.run_until_idle(timeout=60)
            assert (verge.vms[1]["running"], verge.vms[2]["running"], verge.vms[3]["running"]) == (
                False, False, True)
        finally:
            engine.executor.stop(0)
        runs = query(os.environ["TASKENGINE_DB"], "SELECT task, status, output FROM runs ORDER BY created_at")
        assert [(t, s) for t, s, _ in runs] == [("tenant-acme-off", "succeeded"),
                                                ("gpu-vms-off-friday", "succeeded")]
        friday = json.loads(runs[1][2])
        assert sorted(t["vm"] for t in friday["targets"]) == ["gpu-alice", "gpu-bob"]
