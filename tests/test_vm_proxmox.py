"""vm.power on Proxmox VE, against the Proxmox contract server (HTTPS on 127.0.0.1, a test
CA, PVEAPIToken auth, UPID tasks; see tests/test_vm_fixtures.py)."""

from __future__ import annotations

import pytest

from tests.test_vm_fixtures import Proxmox, make_tls, run_power_task


@pytest.fixture
def pve(tmp_path):
    tls = make_tls(tmp_path)
    server = Proxmox(tls)
    server.ca = tls[0]
    server.add_vm(100, "gpu-alice", status="stopped", tags=["gpu"])
    server.add_vm(101, "lab-1", status="running", tags=["lab"], node="pve2")
    server.add_vm(102, "lab-2", status="running", tags=["lab"], ignores_acpi=True)
    server.add_vm(103, "held", status="running", paused=True)
    with server:
        yield server


@pytest.fixture
def run_task(applied, db_path, monkeypatch):
    monkeypatch.setenv("PVE_TOKEN", "pve-secret")

    def run(server, with_: dict):
        host = (f'{{type: proxmox, url: "{server.url}", token_id: "taskengine@pve!ops", '
                f'token: "${{env:PVE_TOKEN}}", ca_file: "{server.ca}"}}')
        return run_power_task(applied, db_path, f"{{pve: {host}}}", with_)

    return run


def test_start_waits_for_the_upid_and_a_second_start_does_nothing(run_task, pve):
    status, out, _ = run_task(pve, {"vm": "gpu-alice", "state": "on"})
    assert status == "succeeded" and out["targets"][0]["after"] == "on"
    assert pve.count("POST", "/api2/json/nodes/pve1/qemu/100/status/start") == 1
    assert pve.count("GET", "/api2/json/nodes/pve1/tasks/") >= 2  # polled until stopped/OK
    status, out, _ = run_task(pve, {"vm": "gpu-alice", "state": "on"})
    assert (status, out["targets"][0]["note"]) == ("succeeded", "already on")
    assert pve.count("POST", "/api2/json/nodes/pve1/qemu/100/status/start") == 1


def test_off_by_tag_across_nodes_with_force(run_task, pve):
    status, out, _ = run_task(pve, {"tag": "lab", "state": "off", "timeout": "2s", "force": True})
    assert status == "succeeded"
    t = {x["vm"]: x for x in out["targets"]}
    assert t["lab-1"]["note"] == "shut down" and t["lab-2"]["forced"] is True
    assert pve.count("POST", "/api2/json/nodes/pve2/qemu/101/status/shutdown") == 1
    assert pve.count("POST", "/api2/json/nodes/pve1/qemu/102/status/stop") == 1
    assert pve.vms[101]["status"] == pve.vms[102]["status"] == "stopped"


def test_paused_is_told_from_running_and_resumed(run_task, pve):
    status, out, _ = run_task(pve, {"vm": "held", "state": "resume"})
    assert status == "succeeded" and out["targets"][0]["before"] == "paused"
    assert pve.vms[103]["paused"] is False


def test_wrong_token_is_an_auth_failure_without_the_secret(run_task, pve, monkeypatch):
    monkeypatch.setenv("PVE_TOKEN", "not-it")
    status, _, error = run_task(pve, {"vm": "gpu-alice", "state": "on"})
    assert status == "failed"
    assert "host 'pve' (Proxmox) refused our credentials while listing VMs (HTTP 401" in error
    assert "not-it" not in error


def test_a_vm_removed_mid_run_is_named(run_task, pve):
    real = pve.handle

    def vanish(method, path, query, raw, headers):
        if method == "POST" and path.endswith("/100/status/start"):
            pve.vms.pop(100, None)  # removed between our listing and our start
        return real(method, path, query, raw, headers)

    pve.handle = vanish
    status, _, error = run_task(pve, {"vm": "gpu-alice", "state": "on"})
    assert status == "failed"
    assert "VM 'gpu-alice' vanished from host 'pve' during the run (HTTP 404)" in error
